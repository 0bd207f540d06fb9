package kformat

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Offsets and values of the x86 boot protocol (Documentation/arch/x86/boot.rst).
const (
	// headerEnd is the end of the fields we read (kernel_info_offset,
	// protocol 2.15); a file shorter than this cannot be a 2.12+ bzImage.
	headerEnd = 0x26c

	bootFlag  = 0xAA55
	hdrsMagic = 0x53726448 // "HdrS"

	// MinProtocol is the oldest boot protocol we load: 2.12 brought
	// xloadflags and with it the 64-bit entry point.
	MinProtocol = 0x020c
)

// loadflags bits.
const (
	LoadedHigh   = 1 << 0
	KASLRFlag    = 1 << 1
	QuietFlag    = 1 << 5
	KeepSegments = 1 << 6
	CanUseHeap   = 1 << 7
)

// xloadflags bits.
const (
	XLFKernel64           = 1 << 0
	XLFCanBeLoadedAbove4G = 1 << 1
	XLFEFIHandover32      = 1 << 2
	XLFEFIHandover64      = 1 << 3
	XLFEFIKexec           = 1 << 4
	XLF5Level             = 1 << 5
	XLF5LevelEnabled      = 1 << 6
)

// Errors from ParseSetupHeader, each a distinct reason to refuse a kernel.
var (
	ErrTruncated    = errors.New("truncated setup header")
	ErrBadMagic     = errors.New("bad magic: not a bzImage (no 0xAA55 boot flag or \"HdrS\" header)")
	ErrOldProtocol  = errors.New("boot protocol older than 2.12")
	ErrNo64BitEntry = errors.New("no 64-bit entry point (XLF_KERNEL_64 clear in xloadflags)")
)

// SetupHeader holds the boot-protocol fields a loader needs. Offsets in
// comments are from the start of the file.
type SetupHeader struct {
	SetupSects        uint8  `json:"setup_sects"`           // 0x1f1; 0 means 4
	SysSize           uint32 `json:"syssize"`               // 0x1f4, protected-mode code in 16-byte units
	BootFlag          uint16 `json:"boot_flag"`             // 0x1fe
	Version           uint16 `json:"version"`               // 0x206
	KernelVersionOff  uint16 `json:"kernel_version"`        // 0x20e, from 0x200
	LoadFlags         uint8  `json:"loadflags"`             // 0x211
	Code32Start       uint32 `json:"code32_start"`          // 0x214
	InitrdAddrMax     uint32 `json:"initrd_addr_max"`       // 0x22c
	KernelAlignment   uint32 `json:"kernel_alignment"`      // 0x230
	RelocatableKernel bool   `json:"relocatable_kernel"`    // 0x234
	MinAlignment      uint8  `json:"min_alignment"`         // 0x235, log2
	XLoadFlags        uint16 `json:"xloadflags"`            // 0x236
	CmdlineSize       uint32 `json:"cmdline_size"`          // 0x238
	PayloadOffset     uint32 `json:"payload_offset"`        // 0x248, from the protected-mode code
	PayloadLength     uint32 `json:"payload_length"`        // 0x24c
	PrefAddress       uint64 `json:"pref_address"`          // 0x258
	InitSize          uint32 `json:"init_size"`             // 0x260
	HandoverOffset    uint32 `json:"handover_offset"`       // 0x264
	KernelInfoOffset  uint32 `json:"kernel_info_offset"`    // 0x268, protocol 2.15
	KernelVersion     string `json:"kernel_version_string"` // the string at 0x200+KernelVersionOff
}

// ParseSetupHeader parses the setup header of a bzImage. It refuses what
// a 64-bit loader cannot boot: a file too short for the header (or for the
// payload it declares), bad magic, a protocol older than 2.12, or no
// 64-bit entry.
func ParseSetupHeader(b []byte) (*SetupHeader, error) {
	le := binary.LittleEndian
	// Check each magic as soon as the file is long enough to hold it, so
	// a short file of the wrong kind says "bad magic", not "truncated".
	if len(b) < 0x200 {
		return nil, fmt.Errorf("%w: %d bytes", ErrTruncated, len(b))
	}
	h := &SetupHeader{
		SetupSects: b[0x1f1],
		BootFlag:   le.Uint16(b[0x1fe:]),
	}
	if h.BootFlag != bootFlag {
		return nil, ErrBadMagic
	}
	if len(b) < 0x206 {
		return nil, fmt.Errorf("%w: %d bytes", ErrTruncated, len(b))
	}
	if le.Uint32(b[0x202:]) != hdrsMagic {
		return nil, ErrBadMagic
	}
	if len(b) < headerEnd {
		return nil, fmt.Errorf("%w: %d bytes", ErrTruncated, len(b))
	}
	h.Version = le.Uint16(b[0x206:])
	h.SysSize = le.Uint32(b[0x1f4:])
	if h.Version < MinProtocol {
		return nil, fmt.Errorf("%w: protocol %s", ErrOldProtocol, ProtocolString(h.Version))
	}
	h.KernelVersionOff = le.Uint16(b[0x20e:])
	h.LoadFlags = b[0x211]
	h.Code32Start = le.Uint32(b[0x214:])
	h.InitrdAddrMax = le.Uint32(b[0x22c:])
	h.KernelAlignment = le.Uint32(b[0x230:])
	h.RelocatableKernel = b[0x234] != 0
	h.MinAlignment = b[0x235]
	h.XLoadFlags = le.Uint16(b[0x236:])
	h.CmdlineSize = le.Uint32(b[0x238:])
	h.PayloadOffset = le.Uint32(b[0x248:])
	h.PayloadLength = le.Uint32(b[0x24c:])
	h.PrefAddress = le.Uint64(b[0x258:])
	h.InitSize = le.Uint32(b[0x260:])
	h.HandoverOffset = le.Uint32(b[0x264:])
	if h.Version >= 0x020f {
		h.KernelInfoOffset = le.Uint32(b[0x268:])
	}
	if h.XLoadFlags&XLFKernel64 == 0 {
		return nil, ErrNo64BitEntry
	}
	setup := h.SetupLen()
	if setup > len(b) {
		return nil, fmt.Errorf("%w: setup code is %d bytes, file is %d", ErrTruncated, setup, len(b))
	}
	// The payload must lie inside the protected-mode part; the kernel's
	// own build puts it there, so anything else is a damaged file.
	end := uint64(setup) + uint64(h.PayloadOffset) + uint64(h.PayloadLength)
	if h.PayloadLength == 0 || end > uint64(len(b)) {
		return nil, fmt.Errorf("%w: payload [%#x, %#x) beyond the file's %d bytes", ErrTruncated, uint64(setup)+uint64(h.PayloadOffset), end, len(b))
	}
	if h.KernelVersionOff != 0 {
		start := 0x200 + int(h.KernelVersionOff)
		if start < setup {
			s := b[start:min(setup, start+256)]
			if i := bytes.IndexByte(s, 0); i >= 0 {
				h.KernelVersion = string(s[:i])
			}
		}
	}
	return h, nil
}

// SetupLen is the size of the real-mode setup in the file: the boot
// sector plus setup_sects sectors (0 meaning the historical 4). The
// protected-mode kernel starts there.
func (h *SetupHeader) SetupLen() int {
	n := int(h.SetupSects)
	if n == 0 {
		n = 4
	}
	return (n + 1) * 512
}

// Payload returns the compressed kernel inside bzImage b.
func (h *SetupHeader) Payload(b []byte) []byte {
	start := h.SetupLen() + int(h.PayloadOffset)
	return b[start : start+int(h.PayloadLength)]
}

// Release is the first word of the kernel version string: what `uname -r`
// prints once the kernel runs.
func (h *SetupHeader) Release() string {
	f := bytes.Fields([]byte(h.KernelVersion))
	if len(f) == 0 {
		return ""
	}
	return string(f[0])
}

// ProtocolString formats a boot protocol version as "2.15".
func ProtocolString(v uint16) string { return fmt.Sprintf("%d.%02d", v>>8, v&0xff) }

// XLoadFlagNames decodes xloadflags for people.
func XLoadFlagNames(x uint16) []string {
	names := []string{"KERNEL_64", "CAN_BE_LOADED_ABOVE_4G", "EFI_HANDOVER_32", "EFI_HANDOVER_64", "EFI_KEXEC", "5LEVEL", "5LEVEL_ENABLED"}
	var out []string
	for i, n := range names {
		if x&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

// LoadFlagNames decodes loadflags for people.
func LoadFlagNames(x uint8) []string {
	names := map[int]string{0: "LOADED_HIGH", 1: "KASLR_FLAG", 5: "QUIET_FLAG", 6: "KEEP_SEGMENTS", 7: "CAN_USE_HEAP"}
	var out []string
	for i := 0; i < 8; i++ {
		if x&(1<<i) != 0 {
			if n, ok := names[i]; ok {
				out = append(out, n)
			} else {
				out = append(out, fmt.Sprintf("bit%d", i))
			}
		}
	}
	return out
}
