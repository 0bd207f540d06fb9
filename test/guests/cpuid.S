/*
 * cpuid: prints what the hv presents, one stable line per fact, for the
 * Go tests to compare with the admitted interface:
 *   XTF cpuid 40000100 eax=%08x ebx=%08x ecx=%08x edx=%08x
 *   XTF cpuid 40000101 eax=... ebx=... ecx=... edx=...
 *   XTF entry r8=%016x r9=%016x r10=%016x
 *   XTF info sel=%02x len=%08x [val=<bytes>]     for selectors 0x00-0x0a
 * A selector's value is printed only when its length is not all ones
 * (unsupported) and at most 200 bytes.
 */
#include "lib/xtf.h"

	.text
	.globl guest_main
guest_main:
	push %rbx
	push %r12
	push %r13
	mov $XENO_CPUID_BASE, %edi
	call print_cpuid
	mov $XENO_CPUID_VER, %edi
	call print_cpuid

	PUTS("XTF entry r8=")
	mov xtf_entry_r8(%rip), %rdi
	mov $16, %esi
	call xtf_puthex
	PUTS(" r9=")
	mov xtf_entry_r9(%rip), %rdi
	mov $16, %esi
	call xtf_puthex
	PUTS(" r10=")
	mov xtf_entry_r10(%rip), %rdi
	mov $16, %esi
	call xtf_puthex
	PUTS("\n")

	xor %r12d, %r12d		/* selector */
1:	mov %r12d, %eax
	mov $XENO_PORT_INFO_SELECT, %dx
	outw %ax, %dx
	mov $XENO_PORT_INFO_LEN, %dx
	inl %dx, %eax
	mov %eax, %r13d			/* length */
	PUTS("XTF info sel=")
	mov %r12, %rdi
	mov $2, %esi
	call xtf_puthex
	PUTS(" len=")
	mov %r13, %rdi
	mov $8, %esi
	call xtf_puthex
	cmp $200, %r13d
	ja 3f
	PUTS(" val=")
2:	test %r13d, %r13d
	jz 3f
	mov $XENO_PORT_INFO_DATA, %dx
	inb %dx, %al
	movzbl %al, %edi
	call xtf_putc
	dec %r13d
	jmp 2b
3:	PUTS("\n")
	inc %r12d
	cmp $(XENO_INFO_SEL_MAX + 1), %r12d
	jbe 1b

	PUTS("XTF RESULT cpuid PASS\n")
	pop %r13
	pop %r12
	pop %rbx
	ret

/* print_cpuid(edi = leaf) */
print_cpuid:
	push %rbx
	push %r12
	push %r13
	push %r14
	push %r15
	mov %edi, %r15d
	mov %edi, %eax
	xor %ecx, %ecx
	cpuid
	mov %eax, %r12d
	mov %ebx, %r13d
	mov %ecx, %r14d
	mov %edx, %ebx
	PUTS("XTF cpuid ")
	mov %r15, %rdi
	mov $8, %esi
	call xtf_puthex
	PUTS(" eax=")
	mov %r12, %rdi
	mov $8, %esi
	call xtf_puthex
	PUTS(" ebx=")
	mov %r13, %rdi
	mov $8, %esi
	call xtf_puthex
	PUTS(" ecx=")
	mov %r14, %rdi
	mov $8, %esi
	call xtf_puthex
	PUTS(" edx=")
	mov %rbx, %rdi
	mov $8, %esi
	call xtf_puthex
	PUTS("\n")
	pop %r15
	pop %r14
	pop %r13
	pop %r12
	pop %rbx
	ret
