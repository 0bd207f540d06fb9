package images

import (
	"encoding/binary"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"
	"unicode/utf16"
)

// xeno writes its FAT filesystems itself. go-diskfs v1.9.4's FAT writer
// was tried first; fsck.vfat rejects what it writes (".." entries of
// root's subdirectories point at cluster 2 instead of 0, the FSInfo free
// count is left unset, FAT16 leaks a cluster, and the FAT32 table is one
// sector short for some sizes), and it takes its timestamps from the
// process environment. A FAT volume written once, in one pass, from a
// known tree is small enough to lay out directly: directories first, then
// files, each in contiguous clusters, in sorted order.

// fatFile is one regular file of a FAT tree; directories are implied.
type fatFile struct {
	path string
	data []byte
}

const (
	sectorSize = 512
	// A FAT32 volume must have at least 65525 clusters, or firmware takes
	// it for FAT16 (the type follows from the cluster count alone).
	minFAT32Clusters = 65525
	maxFAT16Clusters = 65524
	minFAT16Clusters = 4085
	// 64 MiB of 512-byte clusters is comfortably above minFAT32Clusters.
	minFAT32Size = 64 << 20
	minFAT16Size = 8 << 20
)

// fatSize returns a filesystem size, a multiple of 1 MiB, that holds files
// with room for directories and cluster slack.
func fatSize(files []fatFile, fat32 bool) int64 {
	var n int64
	for _, f := range files {
		n += int64(len(f.data)) + 4096
	}
	n += n/16 + 2<<20
	if fat32 && n < minFAT32Size {
		n = minFAT32Size
	}
	if !fat32 && n < minFAT16Size {
		n = minFAT16Size
	}
	return (n + 1<<20 - 1) &^ (1<<20 - 1)
}

// fatEpoch clamps t to what FAT dates can hold (1980 to 2107) and returns
// the packed date and time.
func fatEpoch(t time.Time) (date, tim uint16) {
	t = t.UTC()
	lo := time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	hi := time.Date(2107, 12, 31, 23, 59, 58, 0, time.UTC)
	switch {
	case t.Before(lo):
		t = lo
	case t.After(hi):
		t = hi
	}
	date = uint16((t.Year()-1980)<<9 | int(t.Month())<<5 | t.Day())
	tim = uint16(t.Hour()<<11 | t.Minute()<<5 | t.Second()/2)
	return date, tim
}

// fatDir is a directory being laid out.
type fatDir struct {
	path    string
	parent  *fatDir
	names   []string // children, sorted
	dirs    map[string]*fatDir
	files   map[string]*fatFile
	folded  map[string]string // upper-cased name -> name: FAT matches names without case
	entries [][]byte          // encoded 32-byte entries
	cluster uint32
}

// fatLayout is the geometry of one volume.
type fatLayout struct {
	fat32             bool
	totalSectors      int64
	sectorsPerCluster int64
	reserved          int64
	rootEntries       int64 // FAT16 only
	sectorsPerFAT     int64
	clusters          int64
	hiddenSectors     int64
}

func (l *fatLayout) clusterBytes() int64 { return l.sectorsPerCluster * sectorSize }
func (l *fatLayout) rootDirSectors() int64 {
	return l.rootEntries * 32 / sectorSize
}
func (l *fatLayout) dataStart() int64 {
	return (l.reserved + 2*l.sectorsPerFAT + l.rootDirSectors()) * sectorSize
}
func (l *fatLayout) clusterOffset(c uint32) int64 {
	return l.dataStart() + int64(c-2)*l.clusterBytes()
}

func newFATLayout(size int64, fat32 bool, hidden int64) (*fatLayout, error) {
	l := &fatLayout{fat32: fat32, totalSectors: size / sectorSize, hiddenSectors: hidden}
	entrySize := int64(2)
	if fat32 {
		entrySize = 4
		l.reserved = 32
		l.sectorsPerCluster = 1
		if size >= 512<<20 {
			l.sectorsPerCluster = 8
		}
	} else {
		l.reserved = 1
		l.rootEntries = 512
		l.sectorsPerCluster = 1
		for size/(l.sectorsPerCluster*sectorSize) > 64000 {
			l.sectorsPerCluster *= 2
		}
		// 32 KiB clusters are the largest every FAT driver reads.
		if l.sectorsPerCluster > 64 {
			return nil, fmt.Errorf("FAT16 of %d bytes would need clusters over 32 KiB", size)
		}
	}
	// The FAT must cover every cluster the space left after it holds.
	for l.sectorsPerFAT = 1; ; {
		data := l.totalSectors - l.reserved - l.rootDirSectors() - 2*l.sectorsPerFAT
		l.clusters = data / l.sectorsPerCluster
		need := ((l.clusters+2)*entrySize + sectorSize - 1) / sectorSize
		if need <= l.sectorsPerFAT {
			break
		}
		l.sectorsPerFAT = need
	}
	switch {
	case fat32 && l.clusters < minFAT32Clusters:
		return nil, fmt.Errorf("FAT32 of %d bytes has %d clusters, fewer than %d", size, l.clusters, minFAT32Clusters)
	case !fat32 && (l.clusters < minFAT16Clusters || l.clusters > maxFAT16Clusters):
		return nil, fmt.Errorf("FAT16 of %d bytes has %d clusters, outside %d..%d", size, l.clusters, minFAT16Clusters, maxFAT16Clusters)
	}
	return l, nil
}

// shortName returns the 8.3 directory name for name and the NT case flags
// that make it read back in lower case, or ok=false when name needs a
// long-name entry.
func shortName(name string) (sfn [11]byte, caseFlags byte, ok bool) {
	base, ext, _ := strings.Cut(name, ".")
	if base == "" || len(base) > 8 || len(ext) > 3 || strings.Contains(ext, ".") {
		return sfn, 0, false
	}
	lowerOrUpper := func(s string, lowerFlag byte) (byte, bool) {
		isLower, isUpper := false, false
		for _, r := range s {
			switch {
			case r >= 'a' && r <= 'z':
				isLower = true
			case r >= 'A' && r <= 'Z':
				isUpper = true
			case r >= '0' && r <= '9', strings.ContainsRune("_-~!#$%&'(){}^@`", r):
			default:
				return 0, false
			}
		}
		if isLower && isUpper {
			return 0, false
		}
		if isLower {
			return lowerFlag, true
		}
		return 0, true
	}
	fb, ok1 := lowerOrUpper(base, 0x08)
	fe, ok2 := lowerOrUpper(ext, 0x10)
	if !ok1 || !ok2 {
		return sfn, 0, false
	}
	copy(sfn[:], fmt.Sprintf("%-8s%-3s", strings.ToUpper(base), strings.ToUpper(ext)))
	return sfn, fb | fe, true
}

// aliasName makes the BASE~N.EXT short name of a long name, unique among
// taken.
func aliasName(name string, taken map[[11]byte]bool) [11]byte {
	clean := func(s string, n int) string {
		var b strings.Builder
		for _, r := range strings.ToUpper(s) {
			if b.Len() == n {
				break
			}
			if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') || r == '_' || r == '-' {
				b.WriteRune(r)
			} else if r != '.' && r != ' ' {
				b.WriteByte('_')
			}
		}
		return b.String()
	}
	base, ext := name, ""
	if i := strings.LastIndexByte(name, '.'); i > 0 {
		base, ext = name[:i], name[i+1:]
	}
	b, e := clean(base, 6), clean(ext, 3)
	for n := 1; ; n++ {
		tail := fmt.Sprintf("~%d", n)
		stem := b
		if len(stem)+len(tail) > 8 {
			stem = stem[:8-len(tail)]
		}
		var sfn [11]byte
		copy(sfn[:], fmt.Sprintf("%-8s%-3s", stem+tail, e))
		if !taken[sfn] {
			return sfn
		}
	}
}

func lfnChecksum(sfn [11]byte) byte {
	var sum byte
	for _, c := range sfn {
		sum = (sum&1)<<7 + sum>>1 + c
	}
	return sum
}

// lfnEntries are the long-name entries that precede a short entry, in
// on-disk order (last part first).
func lfnEntries(name string, sfn [11]byte) [][]byte {
	u := utf16.Encode([]rune(name))
	n := (len(u) + 12) / 13
	padded := make([]uint16, n*13)
	for i := range padded {
		switch {
		case i < len(u):
			padded[i] = u[i]
		case i == len(u):
			padded[i] = 0
		default:
			padded[i] = 0xffff
		}
	}
	sum := lfnChecksum(sfn)
	var out [][]byte
	for seq := n; seq >= 1; seq-- {
		e := make([]byte, 32)
		e[0] = byte(seq)
		if seq == n {
			e[0] |= 0x40
		}
		e[11] = 0x0f
		e[13] = sum
		part := padded[(seq-1)*13 : seq*13]
		for i, off := range []int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30} {
			binary.LittleEndian.PutUint16(e[off:], part[i])
		}
		out = append(out, e)
	}
	return out
}

// dirEntry encodes one short directory entry.
func dirEntry(sfn [11]byte, attr, caseFlags byte, cluster uint32, size uint32, date, tim uint16) []byte {
	e := make([]byte, 32)
	copy(e, sfn[:])
	e[11] = attr
	e[12] = caseFlags
	binary.LittleEndian.PutUint16(e[14:], tim)
	binary.LittleEndian.PutUint16(e[16:], date)
	binary.LittleEndian.PutUint16(e[18:], date)
	binary.LittleEndian.PutUint16(e[20:], uint16(cluster>>16))
	binary.LittleEndian.PutUint16(e[22:], tim)
	binary.LittleEndian.PutUint16(e[24:], date)
	binary.LittleEndian.PutUint16(e[26:], uint16(cluster))
	binary.LittleEndian.PutUint32(e[28:], size)
	return e
}

// buildTree turns sorted paths into directories.
func buildTree(files []fatFile) (*fatDir, []*fatDir, error) {
	newDir := func(p string, parent *fatDir) *fatDir {
		return &fatDir{path: p, parent: parent, dirs: map[string]*fatDir{}, files: map[string]*fatFile{}, folded: map[string]string{}}
	}
	// add records a new name in d, refusing one that only differs in case
	// from another: FAT would see the two as the same file.
	add := func(d *fatDir, name, full string) error {
		key := strings.ToUpper(name)
		if other, ok := d.folded[key]; ok && other != name {
			return fmt.Errorf("FAT: %s: %q and %q differ only in case", full, other, name)
		}
		d.folded[key] = name
		d.names = append(d.names, name)
		return nil
	}
	root := newDir("", nil)
	for i := range files {
		f := &files[i]
		if why := validPath(f.path); why != "" {
			return nil, nil, fmt.Errorf("FAT: %q: %s", f.path, why)
		}
		if i := strings.IndexFunc(f.path, func(r rune) bool { return r < 0x20 || strings.ContainsRune(`\:*?"<>|`, r) }); i >= 0 {
			return nil, nil, fmt.Errorf("FAT: %q: %q is not allowed in FAT names", f.path, f.path[i])
		}
		d := root
		parts := strings.Split(f.path, "/")
		for _, c := range parts[:len(parts)-1] {
			if d.files[c] != nil {
				return nil, nil, fmt.Errorf("FAT: %s: %s is a file", f.path, c)
			}
			sub := d.dirs[c]
			if sub == nil {
				sub = newDir(path.Join(d.path, c), d)
				d.dirs[c] = sub
				if err := add(d, c, f.path); err != nil {
					return nil, nil, err
				}
			}
			d = sub
		}
		leaf := parts[len(parts)-1]
		if d.files[leaf] != nil || d.dirs[leaf] != nil {
			return nil, nil, fmt.Errorf("FAT: %s: duplicate path", f.path)
		}
		d.files[leaf] = f
		if err := add(d, leaf, f.path); err != nil {
			return nil, nil, err
		}
	}
	// Preorder over sorted names: the order clusters are given out in.
	var all []*fatDir
	var walk func(d *fatDir)
	walk = func(d *fatDir) {
		sort.Strings(d.names)
		all = append(all, d)
		for _, n := range d.names {
			if sub := d.dirs[n]; sub != nil {
				walk(sub)
			}
		}
	}
	walk(root)
	return root, all, nil
}

// writeFAT writes a FAT16 or FAT32 filesystem of size bytes holding files
// to w at offset start. hidden is the partition's first LBA, recorded in
// the boot sector as DOS expects.
func writeFAT(w io.WriterAt, start, size int64, fat32 bool, label string, volid uint32, epoch time.Time, files []fatFile, hidden int64) error {
	l, err := newFATLayout(size, fat32, hidden)
	if err != nil {
		return err
	}
	files = append([]fatFile(nil), files...)
	sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })
	root, dirs, err := buildTree(files)
	if err != nil {
		return err
	}
	date, tim := fatEpoch(epoch)
	cb := l.clusterBytes()
	clustersFor := func(n int64) int64 { return (n + cb - 1) / cb }

	// Entry counts depend only on names, so directories can be given
	// clusters before their entries are encoded.
	countEntries := func(d *fatDir) int64 {
		n := int64(len(d.names))
		if d != root {
			n += 2
		} else {
			n++ // volume label
		}
		for _, name := range d.names {
			if _, _, ok := shortName(name); !ok {
				n += int64(len(utf16.Encode([]rune(name)))+12) / 13
			}
		}
		return n
	}
	fat := make([]uint32, l.clusters+2)
	next := uint32(2)
	alloc := func(bytes int64) (uint32, error) {
		n := clustersFor(bytes)
		if n == 0 {
			return 0, nil
		}
		if int64(next)+n > l.clusters+2 {
			return 0, fmt.Errorf("FAT of %d bytes is too small for the files", size)
		}
		first := next
		for i := int64(0); i < n-1; i++ {
			fat[next] = next + 1
			next++
		}
		fat[next] = 0x0fffffff
		next++
		return first, nil
	}
	fileCluster := map[*fatFile]uint32{}
	for _, d := range dirs {
		n := countEntries(d)
		if d == root && !fat32 {
			if n > l.rootEntries {
				return fmt.Errorf("FAT16 root directory holds %d entries, more than %d", n, l.rootEntries)
			}
			continue
		}
		if d.cluster, err = alloc(n * 32); err != nil {
			return err
		}
	}
	for i := range files {
		if fileCluster[&files[i]], err = alloc(int64(len(files[i].data))); err != nil {
			return err
		}
	}

	// Encode each directory now that every cluster is known.
	var volLabel [11]byte
	copy(volLabel[:], fmt.Sprintf("%-11s", label))
	for _, d := range dirs {
		var ents [][]byte
		if d == root {
			ents = append(ents, dirEntry(volLabel, 0x08, 0, 0, 0, date, tim))
		} else {
			parent := d.parent.cluster
			if d.parent == root {
				parent = 0 // FAT's ".." names the root as cluster 0, even on FAT32
			}
			ents = append(ents,
				dirEntry([11]byte{'.', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '}, 0x10, 0, d.cluster, 0, date, tim),
				dirEntry([11]byte{'.', '.', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '}, 0x10, 0, parent, 0, date, tim))
		}
		taken := map[[11]byte]bool{}
		for _, name := range d.names {
			if sfn, _, ok := shortName(name); ok {
				taken[sfn] = true
			}
		}
		for _, name := range d.names {
			sfn, caseFlags, ok := shortName(name)
			if !ok {
				sfn = aliasName(name, taken)
				taken[sfn] = true
				ents = append(ents, lfnEntries(name, sfn)...)
			}
			if sub := d.dirs[name]; sub != nil {
				ents = append(ents, dirEntry(sfn, 0x10, caseFlags, sub.cluster, 0, date, tim))
			} else {
				f := d.files[name]
				ents = append(ents, dirEntry(sfn, 0x20, caseFlags, fileCluster[f], uint32(len(f.data)), date, tim))
			}
		}
		d.entries = ents
	}

	put := func(b []byte, off int64) error {
		_, err := w.WriteAt(b, start+off)
		return err
	}
	// Zero the metadata area: the output may be reused space.
	if err := put(make([]byte, l.dataStart()+cb), 0); err != nil {
		return err
	}
	boot := l.bootSector(label, volid)
	if err := put(boot, 0); err != nil {
		return err
	}
	if fat32 {
		fsinfo := make([]byte, sectorSize)
		binary.LittleEndian.PutUint32(fsinfo[0:], 0x41615252)
		binary.LittleEndian.PutUint32(fsinfo[484:], 0x61417272)
		binary.LittleEndian.PutUint32(fsinfo[488:], uint32(l.clusters+2-int64(next)))
		binary.LittleEndian.PutUint32(fsinfo[492:], next)
		binary.LittleEndian.PutUint32(fsinfo[508:], 0xaa550000)
		for _, sec := range []int64{1, 7} {
			if err := put(fsinfo, sec*sectorSize); err != nil {
				return err
			}
		}
		if err := put(boot, 6*sectorSize); err != nil {
			return err
		}
	}
	// The FAT, twice.
	table := make([]byte, l.sectorsPerFAT*sectorSize)
	if fat32 {
		fat[0], fat[1] = 0x0ffffff8, 0x0fffffff
		for i, v := range fat {
			binary.LittleEndian.PutUint32(table[i*4:], v)
		}
	} else {
		fat[0], fat[1] = 0xfff8, 0xffff
		for i, v := range fat {
			binary.LittleEndian.PutUint16(table[i*2:], uint16(v))
		}
	}
	for i := int64(0); i < 2; i++ {
		if err := put(table, (l.reserved+i*l.sectorsPerFAT)*sectorSize); err != nil {
			return err
		}
	}
	// Directories, zero-padded to whole clusters so no stale entries show.
	for _, d := range dirs {
		buf := make([]byte, 0, len(d.entries)*32)
		for _, e := range d.entries {
			buf = append(buf, e...)
		}
		off := l.clusterOffset(d.cluster)
		if d == root && !fat32 {
			off = (l.reserved + 2*l.sectorsPerFAT) * sectorSize
		} else {
			buf = append(buf, make([]byte, clustersFor(int64(len(buf)))*cb-int64(len(buf)))...)
		}
		if err := put(buf, off); err != nil {
			return err
		}
	}
	for i := range files {
		f := &files[i]
		if len(f.data) == 0 {
			continue
		}
		if err := put(f.data, l.clusterOffset(fileCluster[f])); err != nil {
			return err
		}
		if pad := clustersFor(int64(len(f.data)))*cb - int64(len(f.data)); pad > 0 {
			if err := put(make([]byte, pad), l.clusterOffset(fileCluster[f])+int64(len(f.data))); err != nil {
				return err
			}
		}
	}
	// The filesystem's last sector, so a sparse output has its full size.
	return put(make([]byte, sectorSize), l.totalSectors*sectorSize-sectorSize)
}

func (l *fatLayout) bootSector(label string, volid uint32) []byte {
	b := make([]byte, sectorSize)
	copy(b[3:], "XENO    ")
	binary.LittleEndian.PutUint16(b[11:], sectorSize)
	b[13] = byte(l.sectorsPerCluster)
	binary.LittleEndian.PutUint16(b[14:], uint16(l.reserved))
	b[16] = 2
	binary.LittleEndian.PutUint16(b[17:], uint16(l.rootEntries))
	if !l.fat32 && l.totalSectors < 0x10000 {
		binary.LittleEndian.PutUint16(b[19:], uint16(l.totalSectors))
	} else {
		binary.LittleEndian.PutUint32(b[32:], uint32(l.totalSectors))
	}
	b[21] = 0xf8
	binary.LittleEndian.PutUint16(b[24:], 32) // sectors per track
	binary.LittleEndian.PutUint16(b[26:], 64) // heads
	binary.LittleEndian.PutUint32(b[28:], uint32(l.hiddenSectors))
	ext := 36
	if l.fat32 {
		copy(b[0:], []byte{0xeb, 0x58, 0x90})
		binary.LittleEndian.PutUint32(b[36:], uint32(l.sectorsPerFAT))
		binary.LittleEndian.PutUint32(b[44:], 2) // root directory cluster
		binary.LittleEndian.PutUint16(b[48:], 1) // FSInfo sector
		binary.LittleEndian.PutUint16(b[50:], 6) // backup boot sector
		ext = 64
	} else {
		copy(b[0:], []byte{0xeb, 0x3c, 0x90})
		binary.LittleEndian.PutUint16(b[22:], uint16(l.sectorsPerFAT))
	}
	b[ext] = 0x80   // drive number
	b[ext+2] = 0x29 // extended boot signature: the next three fields are valid
	binary.LittleEndian.PutUint32(b[ext+3:], volid)
	copy(b[ext+7:], fmt.Sprintf("%-11s", label))
	if l.fat32 {
		copy(b[ext+18:], "FAT32   ")
	} else {
		copy(b[ext+18:], "FAT16   ")
	}
	b[510], b[511] = 0x55, 0xaa
	return b
}
