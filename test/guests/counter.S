/*
 * counter: prints "XTF COUNT n" for n = 0, 1, 2, ... forever, with a
 * short busy-wait between lines and no timer, for save and restore: a
 * restored domain must go on at exactly the next number. The count is
 * kept twice, in a callee-saved register (restored with the vCPU) and
 * in RAM (restored with memory); a line "XTF RESULT counter FAIL ..."
 * says they disagree.
 */
#include "lib/xtf.h"

#define DELAY 200000

	.text
	.globl guest_main
guest_main:
	xor %r12d, %r12d
	movq $0, count(%rip)
1:	cmp count(%rip), %r12
	jne 3f
	PUTS("XTF COUNT ")
	mov %r12, %rdi
	call xtf_putdec
	mov $'\n', %edi
	call xtf_putc
	inc %r12
	incq count(%rip)
	mov $DELAY, %ecx
2:	pause
	dec %ecx
	jnz 2b
	jmp 1b
3:	PUTS("XTF RESULT counter FAIL the count in RAM is not the register's\n")
	ret

	.data
	.balign 8
count:	.quad 0
