/*
 * shutdown: ends the domain the way the command line says, to test each
 * exit path and its reason:
 *   xtf.how=acpi      SLP_TYP(S5)|SLP_EN to PM1a_CNT        -> poweroff
 *   xtf.how=poweroff  shutdown port, reason 0                -> poweroff
 *   xtf.how=reboot    shutdown port, reason 1                -> reboot
 *   xtf.how=crash     shutdown port, reason 2                -> crash
 *   xtf.how=i8042     0xfe (pulse reset) to port 0x64        -> reboot
 *   xtf.how=triple    empty IDT, then #UD: a triple fault    -> crash
 *   xtf.how=ud2       #UD, reported by lib/head.S's IDT      -> crash
 *   xtf.how=pagefault a read above the identity map: #PF     -> crash
 * If the domain is still running afterwards the guest says so and halts.
 */
#include "lib/xtf.h"

/* Above the 4 GiB the hv identity-maps, canonical: a not-present #PF. */
#define UNMAPPED 0x100000000000

	.text
	.globl guest_main
guest_main:
	PUTS("XTF shutdown start\n")
	CMDLINE_HAS("xtf.how=acpi")
	test %eax, %eax
	jnz acpi
	CMDLINE_HAS("xtf.how=poweroff")
	test %eax, %eax
	jnz port_poweroff
	CMDLINE_HAS("xtf.how=reboot")
	test %eax, %eax
	jnz port_reboot
	CMDLINE_HAS("xtf.how=crash")
	test %eax, %eax
	jnz port_crash
	CMDLINE_HAS("xtf.how=i8042")
	test %eax, %eax
	jnz i8042
	CMDLINE_HAS("xtf.how=triple")
	test %eax, %eax
	jnz triple
	CMDLINE_HAS("xtf.how=ud2")
	test %eax, %eax
	jnz unhandled_ud
	CMDLINE_HAS("xtf.how=pagefault")
	test %eax, %eax
	jnz unhandled_pf
	PUTS("XTF RESULT shutdown FAIL no xtf.how= on the command line\n")
	jmp stuck

acpi:
	PUTS("XTF shutdown via acpi\n")
	mov $ACPI_PM1A_CNT, %dx
	mov $((ACPI_S5_SLP_TYP << 10) | ACPI_SLP_EN), %ax
	outw %ax, %dx
	jmp still_running
port_poweroff:
	PUTS("XTF shutdown via port poweroff\n")
	mov $XENO_SHUTDOWN_POWEROFF, %al
	jmp port
port_reboot:
	PUTS("XTF shutdown via port reboot\n")
	mov $XENO_SHUTDOWN_REBOOT, %al
	jmp port
port_crash:
	PUTS("XTF shutdown via port crash\n")
	mov $XENO_SHUTDOWN_CRASH, %al
port:
	mov $XENO_PORT_SHUTDOWN, %dx
	outb %al, %dx
	jmp still_running
i8042:
	PUTS("XTF shutdown via i8042\n")
	mov $I8042_CMD, %dx
	mov $I8042_RESET, %al
	outb %al, %dx
	jmp still_running
triple:
	PUTS("XTF shutdown via triple fault\n")
	lidt null_idt(%rip)
	ud2
unhandled_ud:
	PUTS("XTF shutdown via an unhandled #UD\n")
	ud2
	jmp still_running
unhandled_pf:
	PUTS("XTF shutdown via an unhandled #PF\n")
	movabs $UNMAPPED, %rax
	mov (%rax), %rax
	jmp still_running
still_running:
	PUTS("XTF RESULT shutdown FAIL still running\n")
stuck:
	cli
	hlt
	jmp stuck

	.section .rodata
	.balign 8
null_idt:
	.word 0
	.quad 0
