/*
 * spray_mmio: a hostile guest that never stops touching unknown MMIO
 * addresses. It reads every 8th address of [256 MiB, 3 GiB) and writes
 * the 4 bytes after it, round and round: beyond the RAM of the test (32
 * MiB), below the MMIO hole's devices, so each access is a KVM_EXIT_MMIO
 * at an address no device claims, and a new one for 88 million accesses.
 * Every address was a log line and a map entry in the hv (8.4 MB/s of
 * hv.log, 5 MB/s of RSS); test/hv's TestHostileGuests checks the bounds.
 * It prints "XTF spray_mmio running", then "XTF spray_mmio round N" after
 * each pass, and never ends: the test destroys it.
 */
#include "lib/xtf.h"

#define SPRAY_START	0x10000000
#define SPRAY_END	0xc0000000

	.text
	.globl guest_main
guest_main:
	PUTS("XTF spray_mmio running\n")
	xor %r12d, %r12d			/* r12: rounds done */
1:	mov $SPRAY_START, %ebx
2:	mov (%rbx), %eax
	movl $0xdeadbeef, 4(%rbx)
	add $8, %rbx
	cmp $SPRAY_END, %ebx
	jb 2b
	inc %r12
	PUTS("XTF spray_mmio round ")
	mov %r12, %rdi
	call xtf_putdec
	PUTS("\n")
	jmp 1b
