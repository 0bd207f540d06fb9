/*
 * xtf.h: constants and macros shared by the micro-guests. The port and
 * selector numbers repeat hv/abi; test/hv's TestGuestHeaderMatchesABI
 * checks that they agree, so hv/abi stays the single source of truth.
 */
#ifndef XTF_H
#define XTF_H

#define XTF_LOAD_ADDR		0x100000	/* pref_address, code32_start */
#define XTF_STACK_SIZE		0x4000		/* per CPU */
#define XTF_MAX_CPUS		16

/* 16550 UART (COM1) */
#define COM1			0x3f8
#define COM1_LSR		(COM1 + 5)
#define LSR_THRE		0x20

/* xeno ports (hv/abi) */
#define XENO_PORT_INFO_SELECT	0x0e10
#define XENO_PORT_INFO_DATA	0x0e12
#define XENO_PORT_INFO_LEN	0x0e14
#define XENO_PORT_CONSOLE	0x0e18
#define XENO_PORT_SHUTDOWN	0x0e19
#define XENO_PORT_BOOT_TIMER	0x0e1a
#define XENO_SHUTDOWN_POWEROFF	0
#define XENO_SHUTDOWN_REBOOT	1
#define XENO_SHUTDOWN_CRASH	2
#define XENO_INFO_SEL_MAX	0x09
#define XENO_ENTRY_MAGIC	0x4f4e4558
#define XENO_CPUID_BASE		0x40000100
#define XENO_CPUID_VER		0x40000101

/* ACPI PM1 block (hv/acpi) and the SLP_TYP of \_S5 in the hv's DSDT */
#define ACPI_PM1A_EVT		0x600
#define ACPI_PM1A_STS		ACPI_PM1A_EVT
#define ACPI_PM1A_EN		(ACPI_PM1A_EVT + 2)
#define ACPI_PM1A_CNT		0x604
#define ACPI_S5_SLP_TYP		5
#define ACPI_SLP_EN		(1 << 13)
#define ACPI_PWRBTN_STS		(1 << 8)
#define ACPI_PWRBTN_EN		(1 << 8)
#define ACPI_SCI_EN		(1 << 0)

/* i8042 */
#define I8042_CMD		0x64
#define I8042_RESET		0xfe

/* local APIC (xAPIC MMIO, identity mapped by the hv) */
#define LAPIC_BASE		0xfee00000
#define LAPIC_ID		0x20
#define LAPIC_EOI		0xb0
#define LAPIC_SVR		0xf0
#define LAPIC_ICR_LO		0x300
#define LAPIC_ICR_HI		0x310

/* Where smp.S copies its real-mode AP trampoline (SIPI vector 0x10). */
#define XTF_TRAMPOLINE		0x10000

/* Print a string literal: PUTS("text\n") */
#define PUTS(s)					\
	.pushsection .rodata.str, "a";		\
	9901: .asciz s;				\
	.popsection;				\
	lea 9901b(%rip), %rdi;			\
	call xtf_puts

/* rax = 1 if the command line contains the string literal s */
#define CMDLINE_HAS(s)				\
	.pushsection .rodata.str, "a";		\
	9902: .asciz s;				\
	.popsection;				\
	lea 9902b(%rip), %rdi;			\
	call xtf_cmdline_has

#endif
