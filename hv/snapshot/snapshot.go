// Package snapshot holds the byte format of a domain snapshot: the stream
// that xl save writes to a file and xl migrate pipes to another host. It
// knows records, sections, pages and hashes, not what a vCPU's or a device's
// state means: the hv fills the sections and reads them back. The layout is
// documented byte by byte in docs/snapshot.md; keep the two in step.
package snapshot

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/xeno-hv/xeno/hv/abi"
)

// Magic is the first 8 bytes of every snapshot stream.
const Magic = "XENOSNAP"

// FormatVersion is the version of the byte layout this package writes and
// the only one it reads. It changes with the layout, not with the hv's
// release.
const FormatVersion = 1

// Bounds. Each one caps what a reader allocates or accepts from a length
// field before it has seen the bytes the length announces.
const (
	// MaxSection is the most a small section (anything but memory) holds.
	MaxSection = 16 << 20
	// MaxHeader is the most the header section's JSON holds.
	MaxHeader = 1 << 20
	// MaxChunk is the most one chunk of a small section carries.
	MaxChunk = 1 << 20
	// PageSize is the unit of a memory section.
	PageSize = 4096
	// MaxRunPages is the most pages one data run carries (1 MiB).
	MaxRunPages = MaxChunk / PageSize
	// MaxKind is the longest section kind.
	MaxKind = 32
	// MaxRAMCopies is how many times a stream may carry the domain's
	// RAM: a live save's rounds send at most three copies while the
	// domain runs (hv/vm's pre-copy budget), the paused round one more.
	MaxRAMCopies = 4
	// maxPageFraming is the most run framing one page of a memory
	// section takes (a zero run of one page: record, start, count); a
	// data page's own run takes less.
	maxPageFraming = 1 + 8 + 8
	// maxOther is room for every section but memory, and for memory
	// sections' own framing.
	maxOther = 1 << 30
)

// MaxStream is the most a snapshot of a domain of memMiB may take, which
// the Reader holds a stream to: MaxRAMCopies of its RAM, each page with
// the most framing it can take, and room for every other section. A
// stream that goes on past it (memory sections repeated without end) is
// refused, not read forever.
func MaxStream(memMiB int) int64 {
	pages := int64(memMiB) << 20 / PageSize
	return MaxRAMCopies*pages*(PageSize+maxPageFraming) + maxOther
}

// MaxSize bounds a snapshot file or stream, for those who keep or open
// one whole (xl migrate-receive, hv --restore): MaxStream of the largest
// domain.
var MaxSize = MaxStream(abi.MaxMemoryMiB)

// Sentinel errors, for errors.Is. Every error this package returns wraps
// one of them and adds the section and the reason.
var (
	ErrBadMagic  = errors.New("not a snapshot (bad magic)")
	ErrVersion   = errors.New("unknown format version")
	ErrTruncated = errors.New("truncated")
	ErrCorrupt   = errors.New("corrupt")
	ErrTooLarge  = errors.New("too large")
	ErrUsage     = errors.New("invalid use")
)

// Record kinds: the first byte of every record after the stream's preamble.
const (
	recSection = 0x01 // begin a small section: u8 kind length, kind
	recMemory  = 0x02 // begin a memory section: u64 GPA, u64 size
	recChunk   = 0x03 // small section data: u32 length, bytes
	recData    = 0x04 // memory data run: u64 first page, u32 count, count pages
	recZero    = 0x05 // memory zero run: u64 first page, u64 count
	recEnd     = 0x06 // end a section: SHA-256 of the section's records
	recTrailer = 0x07 // end the stream: u32 section count, SHA-256 of the stream
)

const (
	kindHeader = "header"
	kindMemory = "memory"
)

// Header is the snapshot's first section: who wrote it and what was admitted.
type Header struct {
	Release   string          `json:"release"`   // the writing hv's release, "1.2.0"
	BuildID   string          `json:"build_id"`  // the writing hv's build id
	Changeset string          `json:"changeset"` // the writing hv's changeset
	Interface string          `json:"interface"` // the admitted interface, abi.Interface.String(), e.g. "1.2" or "1.3-dev@BUILDID"
	Compat    bool            `json:"compat"`    // the guest runs in compat mode
	MemoryMiB int             `json:"memory_mib"`
	VCPUs     int             `json:"vcpus"`
	Config    json.RawMessage `json:"config,omitempty"` // the domain's config as the toolstack gave it (opaque here)
}

// check bounds what a memory section may claim, for the writer and the
// reader alike.
func (h Header) check() error {
	if h.MemoryMiB < 1 || h.MemoryMiB > abi.MaxMemoryMiB {
		return fmt.Errorf("memory_mib %d outside 1 to %d", h.MemoryMiB, abi.MaxMemoryMiB)
	}
	if h.VCPUs < 1 || h.VCPUs > abi.MaxVCPUs {
		return fmt.Errorf("vcpus %d outside 1 to %d", h.VCPUs, abi.MaxVCPUs)
	}
	return nil
}

// Section is one section as read. Memory sections have Kind "memory", Data
// nil, and GPA/Size set.
type Section struct {
	Kind string
	Data []byte
	GPA  uint64
	Size uint64
}

// validKind reports whether kind may name a small section: 1-32 bytes of
// [a-z0-9._-], so that it prints safely in an error and a log.
func validKind(kind string) bool {
	if len(kind) < 1 || len(kind) > MaxKind {
		return false
	}
	for i := 0; i < len(kind); i++ {
		c := kind[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
