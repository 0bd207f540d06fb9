package images

import (
	"encoding/binary"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/xeno-hv/xeno/internal/atomicfile"
)

// The ISO is written by this file, not by go-diskfs: its ISO writer takes
// the PVD and boot catalog dates from the wall clock and directory dates
// from a workspace's mtimes in local time, and Joliet moves the El Torito
// record off sector 17. Patching those after the fact needs as much code
// as a writer for the few files a boot ISO holds, and would break again
// whenever the library changes layout. ISO 9660 level 1 with El Torito is
// a small, fixed format; every byte written here is chosen.

const (
	isoSector = 2048
	// The system area (sectors 0-15) holds the isohybrid MBR; volume
	// descriptors start at 16 and El Torito's boot record must be at 17.
	pvdLBA        = 16
	bootRecordLBA = 17
	// isohybrid pads the image to whole cylinders of 64 heads x 32
	// sectors: 1 MiB, so partition tools see a whole number of cylinders.
	hybridHeads   = 64
	hybridSectors = 32
	hybridAlign   = hybridHeads * hybridSectors * 512
)

// isoFile is one file of the ISO, with the LBA it is given.
type isoFile struct {
	dir, name string // ISO 9660 identifiers: upper case, 8.3; dir "" is the root
	data      []byte // nil for efiboot.img, which is written in place
	size      int64
	lba       int64
}

// identifier is the ISO 9660 file identifier: NAME.EXT;1, where the dot
// stays even when the extension is empty (ECMA-119 7.5.1).
func (f *isoFile) identifier() string {
	if strings.Contains(f.name, ".") {
		return f.name + ";1"
	}
	return f.name + ".;1"
}

func (f *isoFile) sectors() int64 { return (f.size + isoSector - 1) / isoSector }

// isoDir is a directory of the ISO: only the root and its children are
// needed for a boot ISO.
type isoDir struct {
	name    string // "" for the root
	lba     int64
	size    int64 // bytes, whole sectors
	records [][]byte
	files   []*isoFile
}

// isolinuxCfg boots the one entry at once: PROMPT 0 with no UI skips the
// boot prompt, so an unattended boot does not wait.
func (s *BootSpec) isolinuxCfg() []byte {
	return []byte(fmt.Sprintf("DEFAULT xeno\nPROMPT 0\nTIMEOUT 0\nLABEL xeno\n  MENU LABEL %s\n  KERNEL /%s\n  APPEND initrd=/%s %s\n",
		s.title(), kernelName, initrdName, s.Cmdline))
}

// WriteISO writes a hybrid BIOS+UEFI ISO 9660 image: El Torito boots
// isolinux (no emulation, with a boot info table) on BIOS machines and
// efiboot.img (a FAT16 holding systemd-boot, its entry, the kernel and the
// initrd) on UEFI ones. The isohybrid MBR lets BIOS and UEFI machines boot
// the same bytes written to a USB stick. Dates are spec.Epoch in UTC; the
// FAT serial number and MBR disk signature come from spec.Seed.
func WriteISO(path string, spec BootSpec) error {
	if err := spec.check(true); err != nil {
		return fmt.Errorf("images: %s: %w", path, err)
	}
	espFiles := spec.espFiles()
	efiSize := fatSize(espFiles, false)
	isolinux := append([]byte(nil), spec.IsolinuxBin...)
	files := []*isoFile{
		{dir: "ISOLINUX", name: "ISOLINUX.BIN", data: isolinux},
		{dir: "ISOLINUX", name: "LDLINUX.C32", data: spec.LdlinuxC32},
		{dir: "ISOLINUX", name: "ISOLINUX.CFG", data: spec.isolinuxCfg()},
		{name: "VMLINUZ", data: spec.Kernel},
		{name: "INITRD.IMG", data: spec.Initrd},
		// Last, so that firmware which sizes the El Torito image as "the
		// rest of the volume" (EDK2 does when the count is 0) finds it.
		{name: "EFIBOOT.IMG", size: efiSize},
	}
	for _, f := range files {
		if f.data != nil {
			f.size = int64(len(f.data))
		}
		// A directory record's size field is 32 bits; multi-extent files
		// are not written.
		if f.size > 1<<32-1 {
			return fmt.Errorf("images: %s: %s is %d bytes, too large for one ISO 9660 extent", path, f.name, f.size)
		}
	}
	img, err := layoutISO(&spec, files)
	if err != nil {
		return fmt.Errorf("images: %s: %w", path, err)
	}
	efiboot := files[len(files)-1]
	err = atomicfile.Write(path, 0o644, func(f *os.File) error {
		// Written in place with WriteAt: the zeros between are holes, and
		// the large files are not copied into an in-memory image first.
		if err := f.Truncate(img.size); err != nil {
			return err
		}
		for _, p := range img.pieces {
			if _, err := f.WriteAt(p.data, p.off); err != nil {
				return err
			}
		}
		err := writeFAT(f, efiboot.lba*isoSector, efiSize, false, spec.volumeLabel(11),
			deriveUint32(spec.Seed, "efiboot-volume-id"), spec.Epoch, espFiles, 0)
		if err != nil {
			return fmt.Errorf("efiboot.img: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	return nil
}

// isoImage is a laid-out ISO: its size and the bytes to write where.
type isoImage struct {
	size   int64
	pieces []isoPiece
}

type isoPiece struct {
	off  int64
	data []byte
}

// layoutISO assigns sectors and returns the finished image.
func layoutISO(spec *BootSpec, files []*isoFile) (*isoImage, error) {
	// Directories: the root and each first-level directory, sorted.
	dirs := map[string]*isoDir{"": {}}
	for _, f := range files {
		if dirs[f.dir] == nil {
			dirs[f.dir] = &isoDir{name: f.dir}
		}
		dirs[f.dir].files = append(dirs[f.dir].files, f)
	}
	var names []string
	for n := range dirs {
		names = append(names, n)
	}
	sort.Strings(names) // "" (the root) first, as the path table needs
	for _, d := range dirs {
		sort.Slice(d.files, func(i, j int) bool { return d.files[i].name < d.files[j].name })
	}

	// Sectors 16-18 are the volume descriptors, then both path tables,
	// the directories, the boot catalog, and the files.
	next := int64(19)
	pathTable := int64(0)
	for _, n := range names {
		pathTable += 8 + int64(max(1, len(n))+len(n)%2)
	}
	if pathTable > isoSector {
		return nil, fmt.Errorf("ISO path table of %d bytes does not fit a sector", pathTable)
	}
	lPathLBA, mPathLBA := next, next+1
	next += 2
	// A directory's size depends on its children's names only.
	for _, n := range names {
		d := dirs[n]
		recLens := []int{34, 34}
		for _, c := range names {
			if n == "" && c != "" {
				recLens = append(recLens, dirRecordLen(c))
			}
		}
		for _, f := range d.files {
			recLens = append(recLens, dirRecordLen(f.identifier()))
		}
		d.size = packedSize(recLens)
		d.lba = next
		next += d.size / isoSector
	}
	catalogLBA := next
	next++
	// Files go in the caller's order, which puts efiboot.img last.
	for _, f := range files {
		f.lba = next
		next += max(1, f.sectors())
	}
	var isolinux, efiboot *isoFile
	for _, f := range files {
		switch f.name {
		case "ISOLINUX.BIN":
			isolinux = f
		case "EFIBOOT.IMG":
			efiboot = f
		}
	}
	isoEnd := next * isoSector
	total := (isoEnd + hybridAlign - 1) / hybridAlign * hybridAlign
	volumeSectors := total / isoSector

	patchBootInfoTable(isolinux)

	ts := dirTimestamp(spec.Epoch)
	for _, n := range names {
		d := dirs[n]
		parent := dirs[""]
		d.records = append(d.records,
			dirRecord([]byte{0}, d.lba, d.size, true, ts),
			dirRecord([]byte{1}, parent.lba, parent.size, true, ts))
		if n == "" {
			for _, c := range names {
				if c != "" {
					d.records = append(d.records, dirRecord([]byte(c), dirs[c].lba, dirs[c].size, true, ts))
				}
			}
		}
		for _, f := range d.files {
			d.records = append(d.records, dirRecord([]byte(f.identifier()), f.lba, f.size, false, ts))
		}
	}

	// The first 19 sectors (system area, descriptors) in one piece.
	head := make([]byte, 19*isoSector)
	writeHybridMBR(head, total, spec, isolinux, efiboot)
	copy(head[pvdLBA*isoSector:], primaryVolumeDescriptor(spec, volumeSectors, pathTable, lPathLBA, mPathLBA, dirs[""], spec.Epoch))
	copy(head[bootRecordLBA*isoSector:], bootRecord(catalogLBA))
	copy(head[18*isoSector:], terminator())
	img := &isoImage{size: total, pieces: []isoPiece{{0, head}}}
	lpt, mpt := pathTables(names, dirs)
	img.pieces = append(img.pieces, isoPiece{lPathLBA * isoSector, lpt}, isoPiece{mPathLBA * isoSector, mpt})
	for _, n := range names {
		d := dirs[n]
		buf := make([]byte, d.size)
		off := 0
		for _, r := range d.records {
			if off%isoSector+len(r) > isoSector {
				off = (off/isoSector + 1) * isoSector // records never cross sectors
			}
			copy(buf[off:], r)
			off += len(r)
		}
		img.pieces = append(img.pieces, isoPiece{d.lba * isoSector, buf})
	}
	img.pieces = append(img.pieces, isoPiece{catalogLBA * isoSector, bootCatalog(isolinux, efiboot)})
	for _, f := range files {
		if f.data != nil {
			img.pieces = append(img.pieces, isoPiece{f.lba * isoSector, f.data})
		}
	}
	// The last byte, so the file has its full size even if the tail is a hole.
	img.pieces = append(img.pieces, isoPiece{total - 1, []byte{0}})
	return img, nil
}

func dirRecordLen(name string) int { return 33 + len(name) + (len(name)+1)%2 }

// packedSize is the size in whole sectors of directory records that may
// not cross a sector boundary.
func packedSize(lens []int) int64 {
	sectors, used := int64(1), 0
	for _, l := range lens {
		if used+l > isoSector {
			sectors++
			used = 0
		}
		used += l
	}
	return sectors * isoSector
}

// both writes v little-endian then big-endian, as ISO 9660 "both-byte
// order" fields are.
func both32(b []byte, v uint32) {
	binary.LittleEndian.PutUint32(b, v)
	binary.BigEndian.PutUint32(b[4:], v)
}

func both16(b []byte, v uint16) {
	binary.LittleEndian.PutUint16(b, v)
	binary.BigEndian.PutUint16(b[2:], v)
}

// dirTimestamp is the 7-byte directory record date, in UTC.
func dirTimestamp(t time.Time) [7]byte {
	t = t.UTC()
	y := t.Year() - 1900
	y = min(max(y, 0), 255)
	return [7]byte{byte(y), byte(t.Month()), byte(t.Day()), byte(t.Hour()), byte(t.Minute()), byte(t.Second()), 0}
}

// volumeTimestamp is the 17-byte descriptor date, in UTC.
func volumeTimestamp(t time.Time) []byte {
	t = t.UTC()
	b := []byte(fmt.Sprintf("%04d%02d%02d%02d%02d%02d00", t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second()))
	return append(b, 0)
}

func dirRecord(name []byte, lba, size int64, dir bool, ts [7]byte) []byte {
	r := make([]byte, dirRecordLen(string(name)))
	r[0] = byte(len(r))
	both32(r[2:], uint32(lba))
	both32(r[10:], uint32(size))
	copy(r[18:], ts[:])
	if dir {
		r[25] = 0x02
	}
	both16(r[28:], 1)
	r[32] = byte(len(name))
	copy(r[33:], name)
	return r
}

func padded(s string, n int) []byte {
	return []byte(fmt.Sprintf("%-*.*s", n, n, s))
}

func primaryVolumeDescriptor(spec *BootSpec, sectors, pathTable, lPath, mPath int64, root *isoDir, epoch time.Time) []byte {
	b := make([]byte, isoSector)
	b[0] = 1
	copy(b[1:], "CD001")
	b[6] = 1
	copy(b[8:], padded("LINUX", 32))
	copy(b[40:], padded(spec.volumeLabel(32), 32))
	both32(b[80:], uint32(sectors))
	both16(b[120:], 1)
	both16(b[124:], 1)
	both16(b[128:], isoSector)
	both32(b[132:], uint32(pathTable))
	binary.LittleEndian.PutUint32(b[140:], uint32(lPath))
	binary.BigEndian.PutUint32(b[148:], uint32(mPath))
	copy(b[156:], dirRecord([]byte{0}, root.lba, root.size, true, dirTimestamp(epoch)))
	// The volume set identifier tells images with the same label apart,
	// as a random UUID would, but from the seed.
	copy(b[190:], padded(fmt.Sprintf("XENO_%X", derive(spec.Seed, "iso-volume-set", 8)), 128))
	copy(b[318:], padded("", 128))                       // publisher
	copy(b[446:], padded("", 128))                       // data preparer
	copy(b[574:], padded("XENO", 128))                   // application
	copy(b[702:], padded("", 37*3))                      // copyright, abstract, bibliographic files
	copy(b[813:], volumeTimestamp(epoch))                // creation
	copy(b[830:], volumeTimestamp(epoch))                // modification
	copy(b[847:], append([]byte("0000000000000000"), 0)) // expiration: none
	copy(b[864:], volumeTimestamp(epoch))                // effective
	b[881] = 1
	return b
}

func bootRecord(catalogLBA int64) []byte {
	b := make([]byte, isoSector)
	copy(b[1:], "CD001")
	b[6] = 1
	copy(b[7:], "EL TORITO SPECIFICATION")
	binary.LittleEndian.PutUint32(b[0x47:], uint32(catalogLBA))
	return b
}

func terminator() []byte {
	b := make([]byte, isoSector)
	b[0] = 255
	copy(b[1:], "CD001")
	b[6] = 1
	return b
}

func pathTables(names []string, dirs map[string]*isoDir) (l, m []byte) {
	for _, n := range names {
		id := []byte(n)
		if n == "" {
			id = []byte{0}
		}
		e := make([]byte, 8+len(id)+len(id)%2)
		e[0] = byte(len(id))
		copy(e[8:], id)
		le, be := append([]byte(nil), e...), e
		binary.LittleEndian.PutUint32(le[2:], uint32(dirs[n].lba))
		binary.LittleEndian.PutUint16(le[6:], 1) // every directory's parent is the root, number 1
		binary.BigEndian.PutUint32(be[2:], uint32(dirs[n].lba))
		binary.BigEndian.PutUint16(be[6:], 1)
		l = append(l, le...)
		m = append(m, be...)
	}
	return l, m
}

// patchBootInfoTable fills the 56-byte table at offset 8 of isolinux.bin
// that isolinux reads to find itself (mkisofs -boot-info-table): the PVD's
// LBA, its own LBA and length, and a checksum of its bytes from offset 64.
func patchBootInfoTable(f *isoFile) {
	b := f.data
	var sum uint32
	for i := 64; i < len(b); i += 4 {
		var w [4]byte
		copy(w[:], b[i:])
		sum += binary.LittleEndian.Uint32(w[:])
	}
	binary.LittleEndian.PutUint32(b[8:], pvdLBA)
	binary.LittleEndian.PutUint32(b[12:], uint32(f.lba))
	binary.LittleEndian.PutUint32(b[16:], uint32(len(b)))
	binary.LittleEndian.PutUint32(b[20:], sum)
	clear(b[24:64])
}

// elToritoCount is an El Torito sector count: 512-byte units, 16 bits.
// Images too large for it get 0, which EDK2 reads as "to the end of the
// volume" (efiboot.img is the last file for that reason).
func elToritoCount(n int64) uint16 {
	c := (n + 511) / 512
	if c > 0xffff {
		return 0
	}
	return uint16(c)
}

func bootCatalog(isolinux, efiboot *isoFile) []byte {
	b := make([]byte, isoSector)
	// Validation entry: x86, then a checksum that makes the words sum to 0.
	b[0] = 1
	b[30], b[31] = 0x55, 0xaa
	var sum uint16
	for i := 0; i < 32; i += 2 {
		sum += binary.LittleEndian.Uint16(b[i:])
	}
	binary.LittleEndian.PutUint16(b[28:], -sum)
	// Default entry: isolinux, no emulation, 4 virtual sectors loaded at
	// the default segment, as isolinux expects.
	e := b[32:64]
	e[0] = 0x88
	binary.LittleEndian.PutUint16(e[6:], 4)
	binary.LittleEndian.PutUint32(e[8:], uint32(isolinux.lba))
	// Final section header for UEFI (platform 0xEF) with one entry.
	h := b[64:96]
	h[0] = 0x91
	h[1] = 0xef
	binary.LittleEndian.PutUint16(h[2:], 1)
	e = b[96:128]
	e[0] = 0x88
	binary.LittleEndian.PutUint16(e[6:], elToritoCount(efiboot.size))
	binary.LittleEndian.PutUint32(e[8:], uint32(efiboot.lba))
	return b
}

// chs packs a 512-byte LBA as MBR cylinder/head/sector bytes for the
// isohybrid geometry, saturating as MBRs do past cylinder 1023.
func chs(lba int64) [3]byte {
	c := lba / (hybridHeads * hybridSectors)
	h := (lba / hybridSectors) % hybridHeads
	s := lba%hybridSectors + 1
	if c > 1023 {
		c, h, s = 1023, hybridHeads-1, hybridSectors
	}
	return [3]byte{byte(h), byte(s) | byte(c>>8)<<6, byte(c)}
}

func mbrPartition(e []byte, boot bool, typ byte, start, count int64) {
	if boot {
		e[0] = 0x80
	}
	s, end := chs(start), chs(start+count-1)
	copy(e[1:4], s[:])
	e[4] = typ
	copy(e[5:8], end[:])
	binary.LittleEndian.PutUint32(e[8:], uint32(start))
	binary.LittleEndian.PutUint32(e[12:], uint32(count))
}

// writeHybridMBR writes the isohybrid MBR, as syslinux's isohybrid --uefi
// does: isohdpfx's boot code, which finds isolinux.bin through the LBA at
// offset 432 (in 512-byte sectors); the disk signature; a bootable 0x17
// partition covering the image for BIOS, and an 0xEF partition over
// efiboot.img for UEFI.
func writeHybridMBR(img []byte, imageSize int64, spec *BootSpec, isolinux, efiboot *isoFile) {
	copy(img, spec.IsohdpfxBin[:mbrCodeSize])
	binary.LittleEndian.PutUint32(img[432:], uint32(isolinux.lba*4))
	binary.LittleEndian.PutUint32(img[440:], deriveUint32(spec.Seed, "mbr-disk-signature"))
	mbrPartition(img[446:462], true, 0x17, 0, imageSize/512)
	mbrPartition(img[462:478], false, 0xef, efiboot.lba*4, (efiboot.size+511)/512)
	img[510], img[511] = 0x55, 0xaa
}
