/*
 * int3: executes int3 with a #BP handler installed and checks that the
 * handler ran once and returned right after the int3. The software KVM's
 * emulator rejects int3; the hv then injects the #BP itself. It first runs
 * fninit; fwait, the other instruction that emulator rejects and Linux
 * executes (FPU init on every CPU), which the hv completes.
 *   XTF RESULT int3 PASS
 */
#include "lib/xtf.h"

	.text
	.globl guest_main
guest_main:
	lea bp_handler(%rip), %rax
	lea idt(%rip), %rdi
	add $(3 * 16), %rdi
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

	fninit
	fwait
	int3
after_int3:
	cmpl $1, hits(%rip)
	jne 1f
	lea after_int3(%rip), %rax
	cmp %rax, saved_rip(%rip)
	jne 2f
	PUTS("XTF RESULT int3 PASS\n")
	ret
1:	PUTS("XTF RESULT int3 FAIL handler did not run exactly once\n")
	ret
2:	PUTS("XTF RESULT int3 FAIL #BP frame does not point after the int3\n")
	ret

bp_handler:
	incl hits(%rip)
	push %rax
	mov 8(%rsp), %rax		/* the interrupted RIP */
	mov %rax, saved_rip(%rip)
	pop %rax
	iretq

	.data
	.balign 8
idtr:	.word 4 * 16 - 1
	.quad 0
saved_rip: .quad 0
hits:	.long 0

	.bss
	.balign 16
idt:	.skip 4 * 16
