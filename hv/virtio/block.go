package virtio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// DeviceIDBlock is the virtio device ID of a block device.
const DeviceIDBlock = 2

// Block feature bits.
const (
	FeatureBlkSegMax  = 1 << 2
	FeatureBlkRO      = 1 << 5
	FeatureBlkBlkSize = 1 << 6
	FeatureBlkFlush   = 1 << 9
)

// Request types and status values (virtio 1.2 §5.2.6).
const (
	BlkTIn    = 0
	BlkTOut   = 1
	BlkTFlush = 4
	BlkTGetID = 8

	BlkSOK     = 0
	BlkSIOErr  = 1
	BlkSUnsupp = 2

	SectorSize = 512
	blkIDBytes = 20
)

// segMax is the config's seg_max: the data segments one request may use,
// leaving room in a full-size chain for the header and status descriptors.
const segMax = QueueNumMax - 2

// Block is a virtio block device over a host file; NewMMIO puts it on the
// bus. A bad request completes with VIRTIO_BLK_S_IOERR or UNSUPP.
type Block struct {
	f       *os.File
	ro      bool
	sectors uint64
	serial  [blkIDBytes]byte
	config  []byte
}

// NewBlock returns a block device backed by f (whole 512-byte sectors;
// a trailing partial sector is not visible). The caller keeps f open for
// the device's lifetime and closes it.
func NewBlock(f *os.File, readOnly bool) (*Block, error) {
	if f == nil {
		return nil, errors.New("virtio: block device needs a file")
	}
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("virtio: %s: %w", f.Name(), err)
	}
	if !st.Mode().IsRegular() && st.Mode()&os.ModeDevice == 0 {
		return nil, fmt.Errorf("virtio: %s: not a regular file or block device", f.Name())
	}
	size := st.Size()
	if st.Mode()&os.ModeDevice != 0 {
		// Stat reports 0 for block devices; their size is where Seek ends.
		if size, err = f.Seek(0, io.SeekEnd); err != nil {
			return nil, fmt.Errorf("virtio: %s: %w", f.Name(), err)
		}
	}
	b := &Block{f: f, ro: readOnly, sectors: uint64(size) / SectorSize}
	copy(b.serial[:], "xeno:"+filepath.Base(f.Name()))
	b.config = b.buildConfig()
	return b, nil
}

// Capacity returns the disk size in 512-byte sectors.
func (b *Block) Capacity() uint64 { return b.sectors }

// DeviceID implements Device.
func (b *Block) DeviceID() uint32 { return DeviceIDBlock }

// Features implements Device.
func (b *Block) Features() uint64 {
	f := uint64(FeatureBlkSegMax | FeatureBlkBlkSize | FeatureBlkFlush)
	if b.ro {
		f |= FeatureBlkRO
	}
	return f
}

// Config implements Device: struct virtio_blk_config up to blk_size.
func (b *Block) Config() []byte { return b.config }

func (b *Block) buildConfig() []byte {
	c := make([]byte, 0x18)
	binary.LittleEndian.PutUint64(c[0x00:], b.sectors)
	binary.LittleEndian.PutUint32(c[0x0c:], segMax)
	binary.LittleEndian.PutUint32(c[0x14:], SectorSize)
	return c
}

// Serve implements Device: one request, laid out across the chain's
// buffers in any way (VIRTIO_F_ANY_LAYOUT behaviour). An error means the
// chain has no header or no status byte, not that the I/O failed.
func (b *Block) Serve(c Chain) (uint32, error) {
	rd, wr := c.Readable, c.Writable
	var hdr [16]byte
	if gather(rd, 0, hdr[:]) != len(hdr) || size(wr) < 1 {
		return 0, errRing // no header or no status byte
	}
	typ := binary.LittleEndian.Uint32(hdr[0:])
	sector := binary.LittleEndian.Uint64(hdr[8:])
	// The status is the last writable byte; data is what lies between.
	last := wr[len(wr)-1]
	status := &last[len(last)-1]
	written := uint32(1)
	var st byte
	switch typ {
	case BlkTIn:
		n := size(wr) - 1
		st = b.io(sector, wr, 0, n, false)
		if st == BlkSOK {
			written += uint32(n)
		}
	case BlkTOut:
		n := size(rd) - len(hdr)
		if b.ro {
			st = BlkSIOErr
		} else {
			st = b.io(sector, rd, len(hdr), n, true)
		}
	case BlkTFlush:
		if !b.ro && b.f.Sync() != nil {
			st = BlkSIOErr
		}
	case BlkTGetID:
		n := min(size(wr)-1, blkIDBytes)
		scatter(wr, b.serial[:n])
		written += uint32(n)
	default:
		st = BlkSUnsupp
	}
	*status = st
	return written, nil
}

// io moves n bytes between the disk at sector and bufs starting at byte
// skip of bufs, and returns the request status.
func (b *Block) io(sector uint64, bufs [][]byte, skip, n int, write bool) byte {
	if n%SectorSize != 0 || sector > b.sectors || uint64(n/SectorSize) > b.sectors-sector {
		return BlkSIOErr
	}
	pos := int64(sector * SectorSize)
	for _, buf := range bufs {
		if n == 0 {
			break
		}
		if skip >= len(buf) {
			skip -= len(buf)
			continue
		}
		buf = buf[skip:]
		skip = 0
		if len(buf) > n {
			buf = buf[:n]
		}
		var err error
		if write {
			_, err = b.f.WriteAt(buf, pos)
		} else {
			_, err = b.f.ReadAt(buf, pos)
		}
		if err != nil {
			return BlkSIOErr
		}
		pos += int64(len(buf))
		n -= len(buf)
	}
	return BlkSOK
}
