package kvm

import (
	"fmt"
	"unsafe"
)

// rawState are the KVM state structs that a snapshot keeps byte for
// byte: their layout is the uapi's, fixed for x86-64, and every bit
// pattern is a valid Go value (KVM itself checks the contents on set).
type rawState interface {
	Regs | Sregs | FPU | XCRs | DebugRegs | LAPICState | Events | PITState | IRQChip | Clock
}

// Raw returns the bytes of *p, a copy.
func Raw[T rawState](p *T) []byte {
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(p)), unsafe.Sizeof(*p))...)
}

// FromRaw fills *p from b, which must be exactly its size.
func FromRaw[T rawState](b []byte, p *T) error {
	if n := int(unsafe.Sizeof(*p)); len(b) != n {
		return fmt.Errorf("%T: %d bytes, want %d", *p, len(b), n)
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(p)), len(b)), b)
	return nil
}
