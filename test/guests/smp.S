/*
 * smp: finds the CPUs in the ACPI MADT (RSDP from boot_params, then the
 * XSDT), starts every other enabled local APIC with INIT and SIPI through
 * its own LAPIC, and waits for each AP to check in from 64-bit mode:
 *   XTF smp madt cpus=N
 *   XTF smp ap apic=ID               one per AP, in check-in order
 *   XTF RESULT smp PASS cpus=N
 */
#include "lib/xtf.h"

#define BP_ACPI_RSDP	0x70

	.text
	.globl guest_main
guest_main:
	push %rbx
	push %r12
	push %r13
	push %r14
	push %r15
	/* RSDP -> XSDT */
	mov xtf_boot_params(%rip), %rsi
	mov BP_ACPI_RSDP(%rsi), %rsi
	test %rsi, %rsi
	jz no_rsdp
	cmpl $0x20445352, (%rsi)	/* "RSD " */
	jne no_rsdp
	mov 24(%rsi), %rbx		/* XsdtAddress */
	mov 4(%rbx), %ecx		/* XSDT length */
	lea 36(%rbx), %r12		/* first entry */
	lea (%rbx, %rcx), %r13		/* end */
1:	cmp %r13, %r12
	jae no_madt
	mov (%r12), %rsi
	cmpl $0x43495041, (%rsi)	/* "APIC" */
	je found_madt
	add $8, %r12
	jmp 1b

found_madt:
	/* r12 = entry, r13 = end, r14d = enabled LAPIC count */
	mov 4(%rsi), %ecx
	lea 44(%rsi), %r12
	lea (%rsi, %rcx), %r13
	xor %r14d, %r14d
2:	cmp %r13, %r12
	jae 4f
	movzbl 1(%r12), %ecx		/* entry length */
	test %ecx, %ecx
	jz 4f
	cmpb $0, (%r12)			/* type 0: processor local APIC */
	jne 3f
	testl $1, 4(%r12)		/* flags.enabled */
	jz 3f
	movzbl 3(%r12), %eax		/* APIC ID */
	cmp $XTF_MAX_CPUS, %r14d
	jae 3f
	lea madt_ids(%rip), %rdx
	mov %al, (%rdx, %r14)
	inc %r14d
3:	add %rcx, %r12
	jmp 2b
4:	PUTS("XTF smp madt cpus=")
	mov %r14, %rdi
	call xtf_putdec
	PUTS("\n")

	/* Trampoline to 0x10000, with our CR3 for the APs. */
	lea tramp_start(%rip), %rsi
	mov $XTF_TRAMPOLINE, %rdi
	mov $(tramp_end - tramp_start), %ecx
	rep movsb
	mov %cr3, %rax
	mov $XTF_TRAMPOLINE, %rdi
	mov %eax, (tramp_cr3 - tramp_start)(%rdi)

	/* INIT and SIPI to every MADT CPU but ourselves. */
	mov $LAPIC_BASE, %r15
	mov LAPIC_ID(%r15), %ebx
	shr $24, %ebx
	PUTS("XTF smp bsp apic=")
	mov %rbx, %rdi
	call xtf_putdec
	PUTS("\n")
	xor %r12d, %r12d
5:	cmp %r14d, %r12d
	jae 7f
	lea madt_ids(%rip), %rdx
	movzbl (%rdx, %r12), %eax
	cmp %ebx, %eax
	je 6f
	shl $24, %eax
	/* The MP protocol: INIT, 10 ms, SIPI, 200 us, SIPI. */
	mov %eax, LAPIC_ICR_HI(%r15)
	movl $0x4500, LAPIC_ICR_LO(%r15)		/* INIT, assert */
	mov $10000, %edi
	call delay
	mov %eax, LAPIC_ICR_HI(%r15)
	movl $(0x4600 | (XTF_TRAMPOLINE >> 12)), LAPIC_ICR_LO(%r15)	/* SIPI */
	mov $200, %edi
	call delay
	mov %eax, LAPIC_ICR_HI(%r15)
	movl $(0x4600 | (XTF_TRAMPOLINE >> 12)), LAPIC_ICR_LO(%r15)	/* SIPI */
6:	inc %r12d
	jmp 5b

	/* Wait for N-1 check-ins, bounded. */
7:	lea -1(%r14), %r13d
	mov $5000000, %ecx
8:	cmp %r13d, ap_count(%rip)
	jae 9f
	pause
	dec %ecx
	jnz 8b
	PUTS("XTF RESULT smp FAIL only ")
	mov ap_count(%rip), %edi
	call xtf_putdec
	PUTS(" of the APs checked in, entered=")
	mov ap_next(%rip), %edi
	dec %edi
	call xtf_putdec
	PUTS(" tramp=")
	mov $XTF_TRAMPOLINE, %rdi
	mov (tramp_seen - tramp_start)(%rdi), %edi
	call xtf_putdec
	PUTS("\n")
	jmp out

9:	xor %r12d, %r12d
10:	cmp %r13d, %r12d
	jae 11f
	PUTS("XTF smp ap apic=")
	lea ap_ids(%rip), %rdx
	movzbl (%rdx, %r12), %edi
	call xtf_putdec
	PUTS("\n")
	inc %r12d
	jmp 10b
11:	PUTS("XTF RESULT smp PASS cpus=")
	lea 1(%r13), %rdi
	call xtf_putdec
	PUTS("\n")
	jmp out

no_rsdp:
	PUTS("XTF RESULT smp FAIL no RSDP in boot_params\n")
	jmp out
no_madt:
	PUTS("XTF RESULT smp FAIL no MADT in the XSDT\n")
out:	pop %r15
	pop %r14
	pop %r13
	pop %r12
	pop %rbx
	ret

/* delay(edi = iterations of pause): about 1 us each where CPL0 is
 * emulated, far less on hardware KVM; both are long enough for KVM. */
delay:
1:	pause
	dec %edi
	jnz 1b
	ret

/* APs arrive here in 64-bit mode, on the trampoline's GDT, no stack. */
ap_entry64:
	mov $1, %eax
	lock xadd %eax, ap_next(%rip)	/* eax = this AP's slot, 1.. */
	cmp $XTF_MAX_CPUS, %eax
	jae 2f
	lea 1(%rax), %ecx
	imul $XTF_STACK_SIZE, %ecx
	lea xtf_stacks(%rip), %rsp
	add %rcx, %rsp
	mov $LAPIC_BASE, %rdx
	mov LAPIC_ID(%rdx), %edx
	shr $24, %edx
	mov $1, %ecx
	lock xadd %ecx, ap_order(%rip)
	lea ap_ids(%rip), %rdi
	mov %dl, (%rdi, %rcx)
	lock incl ap_count(%rip)
2:	cli
	hlt
	jmp 2b

/* Real-mode AP trampoline, copied to XTF_TRAMPOLINE; runs at CS=0x1000. */
	.code16
tramp_start:
	cli
	mov %cs, %ax
	mov %ax, %ds
	lock incl tramp_seen - tramp_start
	lgdtl tramp_gdtr - tramp_start
	mov %cr4, %eax
	or $0x20, %eax			/* PAE */
	mov %eax, %cr4
	movl tramp_cr3 - tramp_start, %eax
	mov %eax, %cr3
	mov $0xc0000080, %ecx		/* EFER.LME */
	rdmsr
	or $0x100, %eax
	wrmsr
	mov %cr0, %eax
	or $0x80000001, %eax		/* PG | PE */
	mov %eax, %cr0
	ljmpl $0x10, $(XTF_TRAMPOLINE + tramp64 - tramp_start)
	.code64
tramp64:
	mov $0x18, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	movabs $ap_entry64, %rax
	jmp *%rax
	.balign 8
tramp_gdt:
	.quad 0, 0
	.quad 0x00af9b000000ffff	/* 0x10: 64-bit code */
	.quad 0x00cf93000000ffff	/* 0x18: data */
tramp_gdtr:
	.word 31
	.long XTF_TRAMPOLINE + tramp_gdt - tramp_start
tramp_cr3:
	.long 0
tramp_seen:
	.long 0
tramp_end:

	.data
	.balign 4
ap_next:	.long 1
ap_count:	.long 0
ap_order:	.long 0
madt_ids:	.skip XTF_MAX_CPUS
ap_ids:		.skip XTF_MAX_CPUS
