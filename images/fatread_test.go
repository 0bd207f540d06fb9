package images

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"unicode/utf16"
)

// readFAT is a test-only FAT reader, written from the specification and
// not sharing the writer's code, that checks structure as it reads: the
// FAT type follows from the cluster count, both FATs match, chains stay
// in range without loops or cross-links, "." and ".." point where they
// must, long names carry their short entry's checksum, and the FAT32
// FSInfo free count is right. It returns every file by path.
func readFAT(img []byte) (map[string][]byte, error) {
	if len(img) < 512 || img[510] != 0x55 || img[511] != 0xaa {
		return nil, fmt.Errorf("no boot sector signature")
	}
	u16 := func(o int) int { return int(binary.LittleEndian.Uint16(img[o:])) }
	u32 := func(o int) int { return int(binary.LittleEndian.Uint32(img[o:])) }
	bps, spc, reserved, nfats, rootEnts := u16(11), int(img[13]), u16(14), int(img[16]), u16(17)
	total, spf := u16(19), u16(22)
	if total == 0 {
		total = u32(32)
	}
	fat32 := spf == 0
	if fat32 {
		spf = u32(36)
	}
	if bps != 512 || spc == 0 || nfats != 2 || total*bps > len(img) {
		return nil, fmt.Errorf("bad BPB: bps %d spc %d fats %d total %d", bps, spc, nfats, total)
	}
	rootSecs := (rootEnts*32 + bps - 1) / bps
	dataSec := reserved + nfats*spf + rootSecs
	clusters := (total - dataSec) / spc
	if fat32 != (clusters >= 65525) {
		return nil, fmt.Errorf("FAT32=%v but %d clusters say otherwise", fat32, clusters)
	}
	fatA := img[reserved*bps : (reserved+spf)*bps]
	fatB := img[(reserved+spf)*bps : (reserved+2*spf)*bps]
	if !bytes.Equal(fatA, fatB) {
		return nil, fmt.Errorf("the two FATs differ")
	}
	next := func(c int) int {
		if fat32 {
			return int(binary.LittleEndian.Uint32(fatA[4*c:]) & 0x0fffffff)
		}
		return int(binary.LittleEndian.Uint16(fatA[2*c:]))
	}
	eoc := 0xfff8
	if fat32 {
		eoc = 0x0ffffff8
	}
	cb := spc * bps
	used := map[int]bool{}
	chain := func(first int) ([]byte, error) {
		var out []byte
		for c := first; c < eoc; c = next(c) {
			if c < 2 || c >= clusters+2 {
				return nil, fmt.Errorf("cluster %d out of range", c)
			}
			if used[c] {
				return nil, fmt.Errorf("cluster %d used twice", c)
			}
			used[c] = true
			off := (dataSec * bps) + (c-2)*cb
			out = append(out, img[off:off+cb]...)
		}
		return out, nil
	}
	files := map[string][]byte{}
	var walk func(dir []byte, self, parent int, prefix string) error
	walk = func(dir []byte, self, parent int, prefix string) error {
		var lfn []uint16
		var lfnSum byte
		var lfnNext int
		for i := 0; i+32 <= len(dir); i += 32 {
			e := dir[i : i+32]
			if e[0] == 0 {
				break
			}
			if e[0] == 0xe5 {
				continue
			}
			attr := e[11]
			if attr == 0x0f {
				seq := int(e[0] & 0x1f)
				if e[0]&0x40 != 0 {
					lfn, lfnSum, lfnNext = make([]uint16, 13*seq), e[13], seq
				}
				if seq != lfnNext || e[13] != lfnSum || lfn == nil {
					return fmt.Errorf("%s: long name entries out of order", prefix)
				}
				for k, o := range []int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30} {
					lfn[(seq-1)*13+k] = binary.LittleEndian.Uint16(e[o:])
				}
				lfnNext--
				continue
			}
			short := string(e[0:11])
			cluster := int(binary.LittleEndian.Uint16(e[20:]))<<16 | int(binary.LittleEndian.Uint16(e[26:]))
			if attr&0x08 != 0 {
				lfn = nil
				continue
			}
			switch short {
			case ".          ":
				if cluster != self {
					return fmt.Errorf("%s: . is cluster %d, want %d", prefix, cluster, self)
				}
				continue
			case "..         ":
				if cluster != parent {
					return fmt.Errorf("%s: .. is cluster %d, want %d", prefix, cluster, parent)
				}
				continue
			}
			var name string
			if lfn != nil {
				if lfnNext != 0 || lfnChecksumOf(e[0:11]) != lfnSum {
					return fmt.Errorf("%s: long name checksum does not match %q", prefix, short)
				}
				n := 0
				for n < len(lfn) && lfn[n] != 0 {
					n++
				}
				name = string(utf16.Decode(lfn[:n]))
				lfn = nil
			} else {
				base, ext := strings.TrimRight(short[:8], " "), strings.TrimRight(short[8:], " ")
				if e[12]&0x08 != 0 {
					base = strings.ToLower(base)
				}
				if e[12]&0x10 != 0 {
					ext = strings.ToLower(ext)
				}
				name = base
				if ext != "" {
					name += "." + ext
				}
			}
			p := prefix + name
			data, err := chain(cluster)
			if cluster == 0 {
				data, err = nil, nil
			}
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			if attr&0x10 != 0 {
				par := self
				if prefix == "" {
					par = 0
				}
				if err := walk(data, cluster, par, p+"/"); err != nil {
					return err
				}
				continue
			}
			size := int(binary.LittleEndian.Uint32(e[28:]))
			if (size+cb-1)/cb != len(data)/cb {
				return fmt.Errorf("%s: %d bytes in %d clusters", p, size, len(data)/cb)
			}
			files[p] = data[:size]
		}
		return nil
	}
	var root []byte
	var err error
	if fat32 {
		root, err = chain(u32(44))
	} else {
		off := (reserved + nfats*spf) * bps
		root = img[off : off+rootEnts*32]
	}
	if err != nil {
		return nil, err
	}
	rootCluster := 0
	if fat32 {
		rootCluster = u32(44)
	}
	if err := walk(root, rootCluster, 0, ""); err != nil {
		return nil, err
	}
	for c := 2; c < clusters+2; c++ {
		if next(c) != 0 && !used[c] {
			return nil, fmt.Errorf("cluster %d allocated but unreachable", c)
		}
	}
	if fat32 {
		fsinfo := img[u16(48)*bps:]
		if free := int(binary.LittleEndian.Uint32(fsinfo[488:])); free != clusters-len(used) {
			return nil, fmt.Errorf("FSInfo free count %d, want %d", free, clusters-len(used))
		}
	}
	return files, nil
}

func lfnChecksumOf(sfn []byte) byte {
	var sum byte
	for _, c := range sfn {
		sum = (sum&1)<<7 + sum>>1 + c
	}
	return sum
}

// fatTreeFromBytes makes a valid tree: names from an alphabet that mixes
// 8.3, lower case, long and non-ASCII names, with paths that clash under
// FAT's case folding (or a file used as a directory) dropped.
func fatTreeFromBytes(b []byte) []fatFile {
	parts := []string{"a", "B", "efi", "BOOT", "loader.conf", "Mixed.Case", "x.tar.gz", "12345678.ABC",
		"longer file name", "é", "~1", "dir.d", "UPPER.lower", "n"}
	kinds := map[string]string{} // upper-cased path -> "d" or "f"
	var files []fatFile
	for len(b) >= 3 && len(files) < 48 {
		depth := int(b[0]%3) + 1
		size := int(b[1]) * int(b[2]%8+1)
		b = b[3:]
		var comps []string
		for i := 0; i < depth && len(b) > 0; i++ {
			comps = append(comps, parts[int(b[0])%len(parts)])
			b = b[1:]
		}
		if len(comps) == 0 {
			break
		}
		ok := true
		for i := range comps {
			key := strings.ToUpper(strings.Join(comps[:i+1], "/"))
			want := "d"
			if i == len(comps)-1 {
				want = "f"
			}
			if k, seen := kinds[key]; seen && (k != want || want == "f") {
				ok = false
			}
		}
		if !ok {
			continue
		}
		for i := range comps {
			key := strings.ToUpper(strings.Join(comps[:i+1], "/"))
			if i == len(comps)-1 {
				kinds[key] = "f"
			} else {
				kinds[key] = "d"
			}
		}
		// Paths clashing only in case with an earlier one, at any level,
		// were dropped above; exact-case repeats of directories are fine.
		p := strings.Join(comps, "/")
		if clash := caseClash(files, p); clash {
			continue
		}
		files = append(files, fatFile{p, bytes.Repeat([]byte{byte(len(files))}, size)})
	}
	return files
}

// caseClash reports whether p names a directory level that an earlier
// path spells with other case.
func caseClash(files []fatFile, p string) bool {
	pc := strings.Split(p, "/")
	for _, f := range files {
		fc := strings.Split(f.path, "/")
		for i := 0; i < len(pc) && i < len(fc); i++ {
			if pc[i] != fc[i] {
				if strings.EqualFold(pc[i], fc[i]) {
					return true
				}
				break
			}
		}
	}
	return false
}

func FuzzWriteFAT(f *testing.F) {
	f.Add([]byte{0, 10, 1, 2}, false)
	f.Add([]byte{2, 200, 7, 2, 3, 4, 1, 5, 0, 6, 2, 255, 7, 8, 9, 10}, true)
	f.Add([]byte{1, 1, 1, 4, 4, 1, 1, 1, 4, 5}, false)
	f.Fuzz(func(t *testing.T, b []byte, fat32 bool) {
		files := fatTreeFromBytes(b)
		size := fatSize(files, fat32)
		w := &memWriterAt{b: make([]byte, size)}
		if err := writeFAT(w, 0, size, fat32, "FUZZ", 1, testEpoch, files, 0); err != nil {
			t.Fatalf("refused a valid tree %q: %v", paths(files), err)
		}
		got, err := readFAT(w.b)
		if err != nil {
			t.Fatalf("reading back %q: %v", paths(files), err)
		}
		if len(got) != len(files) {
			t.Fatalf("read %d files, wrote %d: %q", len(got), len(files), paths(files))
		}
		for _, f := range files {
			if !bytes.Equal(got[f.path], f.data) {
				t.Errorf("%s: read %d bytes, wrote %d", f.path, len(got[f.path]), len(f.data))
			}
		}
	})
}

func paths(files []fatFile) []string {
	var p []string
	for _, f := range files {
		p = append(p, f.path)
	}
	return p
}

// TestReadFATCatchesDamage keeps the fuzz target's checker honest: it
// must reject images a bug could produce.
func TestReadFATCatchesDamage(t *testing.T) {
	files := []fatFile{{"dir/file", bytes.Repeat([]byte("x"), 3000)}, {"long name.conf", []byte("y")}}
	for _, tc := range []struct {
		name   string
		damage func(l *fatLayout, img []byte)
		want   string
	}{
		{"second FAT", func(l *fatLayout, img []byte) { img[(l.reserved+l.sectorsPerFAT)*sectorSize+8]++ }, "the two FATs differ"},
		{"long name checksum", func(l *fatLayout, img []byte) {
			root := (l.reserved + 2*l.sectorsPerFAT) * sectorSize
			for i := root; ; i += 32 {
				if img[i+11] == 0x0f {
					img[i+13]++
					return
				}
			}
		}, "long name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			size := fatSize(files, false)
			w := &memWriterAt{b: make([]byte, size)}
			if err := writeFAT(w, 0, size, false, "T", 1, testEpoch, files, 0); err != nil {
				t.Fatal(err)
			}
			if _, err := readFAT(w.b); err != nil {
				t.Fatalf("undamaged image: %v", err)
			}
			l, err := newFATLayout(size, false, 0)
			if err != nil {
				t.Fatal(err)
			}
			tc.damage(l, w.b)
			if _, err := readFAT(w.b); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error about %s", err, tc.want)
			}
		})
	}
}
