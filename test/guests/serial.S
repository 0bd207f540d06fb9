/*
 * serial: the basic "boot and print" guest. It marks the boot timer first
 * (so the benchmark measures the VMM, not the guest), writes to the
 * isa-debug-exit port 0xf4 only when the cmdline asks (QEMU peer run),
 * prints its result over COM1 and powers off.
 */
#include "lib/xtf.h"

	.text
	.globl guest_main
guest_main:
	push %rbx
	call xtf_boot_timer
	/* "xtf.debugexit" on the cmdline: leave through QEMU's isa-debug-exit. */
	mov xtf_boot_params(%rip), %rsi
	mov 0x228(%rsi), %esi		/* hdr.cmd_line_ptr */
	test %esi, %esi
	jz 2f
	lea debugexit(%rip), %rdi
	call xtf_strstr
	test %rax, %rax
	jz 2f
	mov $0xf4, %dx
	xor %eax, %eax
	outb %al, %dx
2:	PUTS("XTF serial hello from the micro-guest\n")
	PUTS("XTF RESULT serial PASS\n")
	pop %rbx
	ret

/* xtf_strstr(rdi = needle, rsi = haystack): rax = 1 if found, else 0. */
xtf_strstr:
1:	cmpb $0, (%rsi)
	je 4f
	xor %ecx, %ecx
2:	movb (%rdi, %rcx), %al
	test %al, %al
	je 3f
	cmpb (%rsi, %rcx), %al
	jne 5f
	inc %rcx
	jmp 2b
5:	inc %rsi
	jmp 1b
3:	mov $1, %eax
	ret
4:	xor %eax, %eax
	ret

	.section .rodata
debugexit:
	.asciz "xtf.debugexit"
