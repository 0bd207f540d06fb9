/*
 * dirty_counter: the counter guest (counter.S) that also keeps its count
 * in the first word of every page of a 4 MiB buffer, for live migration:
 * each line dirties 1024 pages, so a live save goes round after round,
 * and a page that a round missed comes back stale. For n = 0, 1, 2, ...
 * it checks that every page holds n, prints "XTF COUNT n", then writes
 * n+1 into every page. "XTF RESULT dirty_counter FAIL ..." says a page
 * (or the count in RAM) disagrees with the count in the register.
 */
#include "lib/xtf.h"

#define DELAY	100000
#define BUF	0x1000000	/* 16 MiB: above the guest, below 32 MiB */
#define PAGES	1024

	.text
	.globl guest_main
guest_main:
	xor %r12d, %r12d
	movq $0, count(%rip)
1:	cmp count(%rip), %r12
	jne 5f
	mov $BUF, %eax
	mov $PAGES, %ecx
2:	cmp (%rax), %r12
	jne 6f
	add $4096, %rax
	dec %ecx
	jnz 2b
	PUTS("XTF COUNT ")
	mov %r12, %rdi
	call xtf_putdec
	mov $'\n', %edi
	call xtf_putc
	inc %r12
	incq count(%rip)
	mov $BUF, %eax
	mov $PAGES, %ecx
3:	mov %r12, (%rax)
	add $4096, %rax
	dec %ecx
	jnz 3b
	mov $DELAY, %ecx
4:	pause
	dec %ecx
	jnz 4b
	jmp 1b
5:	PUTS("XTF RESULT dirty_counter FAIL the count in RAM is not the register's\n")
	ret
6:	mov %rax, %rbx
	PUTS("XTF RESULT dirty_counter FAIL a page of the buffer holds a stale count: at ")
	mov %rbx, %rdi
	mov $8, %esi
	call xtf_puthex
	PUTS(" ")
	mov (%rbx), %rdi
	call xtf_putdec
	PUTS(", want ")
	mov %r12, %rdi
	call xtf_putdec
	mov $'\n', %edi
	call xtf_putc
	ret

	.data
	.balign 8
count:	.quad 0
