/*
 * flood: a hostile guest that never stops printing. It fills a 4 KiB
 * buffer with 64 numbered lines of 64 bytes,
 *     "XTF flood 0000000042 xxxx...x\n",
 * numbered on from the last, and sends it to COM1 with one rep outsb (one
 * KVM exit for up to a page of bytes), round and round. test/hv's
 * TestHostileGuests checks that console.log stays capped and loses no
 * line, that a console client that reads nothing is told what it lost,
 * and that the hv's memory stays bounded. It never ends: the test
 * destroys it.
 */
#include "lib/xtf.h"

#define LINE		64
#define LINES		64
#define DIGITS		10
#define PREFIX		10			/* "XTF flood " */

	.text
	.globl guest_main
guest_main:
	/* The constant part of every line, once. */
	lea buf(%rip), %rdi
	mov $LINES, %ecx
1:	movabs $0x6f6f6c6620465458, %rax	/* "XTF floo" */
	mov %rax, (%rdi)
	movw $0x2064, 8(%rdi)			/* "d " */
	movb $' ', PREFIX + DIGITS(%rdi)
	lea PREFIX + DIGITS + 1(%rdi), %rdx
	lea LINE - 1(%rdi), %rsi
2:	movb $'x', (%rdx)
	inc %rdx
	cmp %rsi, %rdx
	jb 2b
	movb $'\n', (%rsi)
	add $LINE, %rdi
	dec %ecx
	jnz 1b

	xor %r12d, %r12d			/* r12: the next line's number */
3:	lea buf(%rip), %rbx
	mov $LINES, %r13d
4:	/* Ten decimal digits of r12 into the line at rbx. */
	mov %r12, %rax
	lea PREFIX + DIGITS - 1(%rbx), %rdi
	mov $10, %r8d
	mov $DIGITS, %ecx
5:	xor %edx, %edx
	div %r8
	add $'0', %dl
	mov %dl, (%rdi)
	dec %rdi
	dec %ecx
	jnz 5b
	inc %r12
	add $LINE, %rbx
	dec %r13d
	jnz 4b

	lea buf(%rip), %rsi
	mov $COM1, %dx
	mov $(LINE * LINES), %ecx
	cld
	rep outsb
	jmp 3b

	.bss
	.balign 64
buf:	.skip LINE * LINES
