/*
 * powerbutton: waits, halted with interrupts on, for the ACPI power
 * button. It routes the SCI (IOAPIC pin 9, level, active high) to vector
 * 0x30, enables PWRBTN_EN and prints "XTF powerbutton waiting"; the SCI
 * handler acknowledges PWRBTN_STS. Then it powers off through ACPI S5, as
 * Linux's acpid would. Used by the `xl shutdown` tests.
 */
#include "lib/xtf.h"

#define SCI_VECTOR	0x30
#define SCI_PIN		9
#define IOAPIC_BASE	0xfec00000

	.text
	.globl guest_main
guest_main:
	push %rbx
	/* IDT entry for SCI_VECTOR: 64-bit interrupt gate to sci_handler. */
	lea sci_handler(%rip), %rax
	lea idt(%rip), %rdi
	add $(SCI_VECTOR * 16), %rdi
	mov %ax, (%rdi)
	movw $0x10, 2(%rdi)
	movw $0x8e00, 4(%rdi)
	shr $16, %rax
	mov %ax, 6(%rdi)
	shr $16, %rax
	mov %eax, 8(%rdi)
	movl $0, 12(%rdi)
	lea idt(%rip), %rax
	mov %rax, idtr+2(%rip)
	lidt idtr(%rip)

	/* Mask both 8259s: every line also reaches them, and their vectors
	 * are unprogrammed; the LAPIC's LINT0 passes them through (ExtINT). */
	mov $0xff, %al
	outb %al, $0x21
	outb %al, $0xa1

	/* LAPIC on (SVR bit 8, spurious vector 0xff). */
	mov $LAPIC_BASE, %rbx
	movl $0x1ff, LAPIC_SVR(%rbx)

	/* IOAPIC redirection entry for the SCI pin: vector, level, unmasked, to APIC 0. */
	mov $IOAPIC_BASE, %rdi
	movl $(0x10 + 2 * SCI_PIN + 1), (%rdi)
	movl $0, 0x10(%rdi)
	movl $(0x10 + 2 * SCI_PIN), (%rdi)
	movl $(SCI_VECTOR | (1 << 15)), 0x10(%rdi)

	/* PM1_EN.PWRBTN_EN */
	mov $ACPI_PM1A_EN, %dx
	mov $ACPI_PWRBTN_EN, %ax
	outw %ax, %dx

	PUTS("XTF powerbutton waiting\n")
1:	sti
	hlt
	cli
	cmpl $0, pressed(%rip)
	je 1b

	PUTS("XTF powerbutton pressed\n")
	PUTS("XTF RESULT powerbutton PASS\n")
	mov $ACPI_PM1A_CNT, %dx
	mov $((ACPI_S5_SLP_TYP << 10) | ACPI_SLP_EN), %ax
	outw %ax, %dx
	PUTS("XTF RESULT powerbutton FAIL still running after S5\n")
2:	cli
	hlt
	jmp 2b

sci_handler:
	push %rax
	push %rdx
	mov $ACPI_PM1A_STS, %dx
	inw %dx, %ax
	test $ACPI_PWRBTN_STS, %ax
	jz 1f
	movl $1, pressed(%rip)
	mov $ACPI_PWRBTN_STS, %ax	/* write 1 to clear */
	outw %ax, %dx
1:	mov $LAPIC_BASE, %rdx
	movl $0, LAPIC_EOI(%rdx)
	pop %rdx
	pop %rax
	iretq

	.data
	.balign 8
idtr:	.word (SCI_VECTOR + 1) * 16 - 1
	.quad 0
pressed: .long 0

	.bss
	.balign 16
idt:	.skip (SCI_VECTOR + 1) * 16
