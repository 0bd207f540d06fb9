package images

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// BootSpec is what a bootable image holds. Kernel and Initrd are passed as
// bytes: the builder has them in memory after verifying their hashes, and
// writing from a buffer means the image cannot differ from what was hashed.
type BootSpec struct {
	Kernel, Initrd []byte
	Cmdline        string
	// Label is the volume label (FAT, ISO) and the boot entry's title. It
	// is upper-cased and cut to each format's limit; empty means "XENO".
	Label string
	// Epoch is every timestamp in every output (SOURCE_DATE_EPOCH). FAT
	// cannot store dates before 1980, so FAT entries clamp to 1980-01-01.
	Epoch time.Time
	// Seed derives every identifier: GPT disk and partition GUIDs, FAT
	// volume ids, the MBR disk signature.
	Seed string
	// Syslinux BIOS boot files, for the ISO only.
	IsolinuxBin, LdlinuxC32, IsohdpfxBin []byte
	// SystemdBootEFI is systemd-bootx64.efi, installed as EFI/BOOT/BOOTX64.EFI.
	SystemdBootEFI []byte
}

// Where the boot files live inside every image, and what the loader
// entries name.
const (
	kernelName = "vmlinuz"
	initrdName = "initrd.img"
)

func (s *BootSpec) check(iso bool) error {
	var missing []string
	if len(s.Kernel) == 0 {
		missing = append(missing, "Kernel")
	}
	if len(s.Initrd) == 0 {
		missing = append(missing, "Initrd")
	}
	if len(s.SystemdBootEFI) == 0 {
		missing = append(missing, "SystemdBootEFI")
	}
	if iso {
		if len(s.IsolinuxBin) < 64 {
			missing = append(missing, "IsolinuxBin (need at least its 64-byte header)")
		}
		if len(s.LdlinuxC32) == 0 {
			missing = append(missing, "LdlinuxC32")
		}
		if len(s.IsohdpfxBin) < mbrCodeSize {
			missing = append(missing, fmt.Sprintf("IsohdpfxBin (need at least %d bytes)", mbrCodeSize))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("boot spec lacks %s", strings.Join(missing, ", "))
	}
	// Both go into line-based loader configs, where a newline would start
	// a new directive.
	isCtl := func(r rune) bool { return r < 0x20 || r == 0x7f }
	if strings.IndexFunc(s.Cmdline, isCtl) >= 0 {
		return errors.New("kernel command line holds a newline or control character")
	}
	if strings.IndexFunc(s.Label, isCtl) >= 0 {
		return errors.New("label holds a newline or control character")
	}
	if s.Epoch.IsZero() {
		return errors.New("boot spec has no Epoch")
	}
	return nil
}

// title is the label as a boot menu shows it.
func (s *BootSpec) title() string {
	if s.Label == "" {
		return "xeno"
	}
	return s.Label
}

// volumeLabel maps the label to the characters FAT and ISO 9660 volume
// labels allow (A-Z, 0-9, _), upper-cased and cut to max.
func (s *BootSpec) volumeLabel(max int) string {
	l := s.Label
	if l == "" {
		l = "XENO"
	}
	var b strings.Builder
	for _, r := range strings.ToUpper(l) {
		if b.Len() == max {
			break
		}
		if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// loaderFiles are systemd-boot's configuration: boot the one entry at
// once, with no menu, so that an unattended boot takes no extra time.
func (s *BootSpec) loaderFiles() []fatFile {
	return []fatFile{
		{"loader/loader.conf", []byte("timeout 0\ndefault xeno.conf\neditor no\n")},
		{"loader/entries/xeno.conf", []byte(fmt.Sprintf(
			"title %s\nlinux /%s\ninitrd /%s\noptions %s\n", s.title(), kernelName, initrdName, s.Cmdline))},
	}
}

// espFiles is the tree of an EFI system partition. systemd-boot reads
// kernels only from its own volume, so the kernel and initrd go in too.
func (s *BootSpec) espFiles() []fatFile {
	return append([]fatFile{
		{"EFI/BOOT/BOOTX64.EFI", s.SystemdBootEFI},
		{kernelName, s.Kernel},
		{initrdName, s.Initrd},
	}, s.loaderFiles()...)
}

// derive returns n bytes determined by the seed and what they are for, so
// that each identifier is independent of the others.
func derive(seed, purpose string, n int) []byte {
	sum := sha256.Sum256([]byte("xeno-images\x00" + purpose + "\x00" + seed))
	return sum[:n]
}

// deriveGUID is an RFC 4122 version 4 GUID made from the seed: the form
// random GUIDs have, without the randomness.
func deriveGUID(seed, purpose string) string {
	var u uuid.UUID
	copy(u[:], derive(seed, purpose, 16))
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return strings.ToUpper(u.String())
}

func deriveUint32(seed, purpose string) uint32 {
	return binary.LittleEndian.Uint32(derive(seed, purpose, 4))
}

// mbrCodeSize is how much of isohdpfx.bin is boot code: the MBR up to the
// isohybrid fields at offset 432.
const mbrCodeSize = 432
