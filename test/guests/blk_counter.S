/*
 * blk_counter: a virtio-blk guest that never stops doing I/O, for save
 * and restore. For n = 0, 1, 2, ... it reads sector n-1 back and checks
 * it holds n-1 (an earlier write was not lost), writes n into the first
 * eight bytes of sector n, and prints "XTF BLK n". virtio_req checks
 * that each request is used exactly once (the used index never runs
 * past the available one). At the disk's end it prints its verdict.
 */
#include "lib/xtf.h"
#include "lib/virtio.inc"

#define FAIL(why)						\
	PUTS("XTF RESULT blk_counter FAIL " why "\n");		\
	jmp out

	.text
	.globl guest_main
guest_main:
	push %rbx
	push %r12
	push %r13
	xor %edi, %edi
	call virtio_init
	test %eax, %eax
	jz 1f
	FAIL("virtio init")
1:	mov $VIRTIO_BASE, %r11d
	mov VIRTIO_CONFIG(%r11), %r13d		/* r13: capacity (below 4 Gi sectors) */
	xor %r12d, %r12d			/* r12: n */
2:	test %r12, %r12
	jz 3f
	movq $-1, BUF_READ
	mov $VIRTIO_BLK_T_IN, %edi
	lea -1(%r12), %rsi
	mov $BUF_READ, %edx
	mov $VRING_DESC_F_WRITE, %ecx
	mov $512, %r8d
	call virtio_req
	test %eax, %eax
	jz 4f
	FAIL("a read did not complete with OK, or completed twice")
4:	lea -1(%r12), %rax
	cmp %rax, BUF_READ
	je 3f
	FAIL("sector n-1 does not hold n-1: a write was lost")
3:	mov %r12, BUF_WRITE
	mov $VIRTIO_BLK_T_OUT, %edi
	mov %r12, %rsi
	mov $BUF_WRITE, %edx
	xor %ecx, %ecx
	mov $512, %r8d
	call virtio_req
	test %eax, %eax
	jz 5f
	FAIL("a write did not complete with OK, or completed twice")
5:	PUTS("XTF BLK ")
	mov %r12, %rdi
	call xtf_putdec
	mov $'\n', %edi
	call xtf_putc
	inc %r12
	cmp %r13, %r12
	jb 2b
	PUTS("XTF RESULT blk_counter PASS\n")
out:	pop %r13
	pop %r12
	pop %rbx
	ret
