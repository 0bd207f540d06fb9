/*
 * spray_port: a hostile guest that never stops touching I/O ports. It
 * reads and writes 1, 2 and 4 bytes at every port but those whose writes
 * have a documented effect (lib/skip.inc), round and round. Most ports
 * have no device; each was a log line and a map entry in the hv.
 * test/hv's TestHostileGuests checks the bounds. It prints "XTF
 * spray_port running", then "XTF spray_port round N" after each pass of
 * the 65536 ports, and never ends: the test destroys it.
 */
#include "lib/xtf.h"

	.text
	.globl guest_main
guest_main:
	PUTS("XTF spray_port running\n")
	xor %r13d, %r13d			/* r13: rounds done */
1:	xor %r12d, %r12d			/* r12: port */
2:	mov %r12d, %edi
	call port_skip
	test %eax, %eax
	jnz 3f
	mov %r12d, %edx
	inb %dx, %al
	inw %dx, %ax
	inl %dx, %eax
	mov $0x5a5a5a5a, %eax
	outb %al, %dx
	outw %ax, %dx
	outl %eax, %dx
3:	inc %r12d
	cmp $0x10000, %r12d
	jb 2b
	inc %r13
	PUTS("XTF spray_port round ")
	mov %r13, %rdi
	call xtf_putdec
	PUTS("\n")
	jmp 1b

#include "lib/skip.inc"
