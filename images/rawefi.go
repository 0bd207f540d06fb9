package images

import (
	"fmt"
	"os"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/xeno-hv/xeno/internal/atomicfile"
)

// GPT layout: the ESP starts at 1 MiB, as partitioning tools align it, and
// 1 MiB at the end leaves room for the backup partition array and header.
const (
	espStartLBA = 2048
	gptTail     = 1 << 20
)

// WriteRawEFI writes a raw disk image for UEFI machines: a protective MBR,
// a GPT whose one partition is an EFI system partition (FAT32) holding
// systemd-boot as EFI/BOOT/BOOTX64.EFI, its loader entry, the kernel and
// the initrd. The disk and partition GUIDs and the FAT serial number come
// from spec.Seed.
func WriteRawEFI(path string, spec BootSpec) error {
	if err := spec.check(false); err != nil {
		return fmt.Errorf("images: %s: %w", path, err)
	}
	files := spec.espFiles()
	espSize := fatSize(files, true)
	diskSize := espStartLBA*sectorSize + espSize + gptTail
	err := atomicfile.Write(path, 0o644, func(f *os.File) error {
		if err := f.Truncate(diskSize); err != nil {
			return err
		}
		table := &gpt.Table{
			LogicalSectorSize:  sectorSize,
			PhysicalSectorSize: sectorSize,
			ProtectiveMBR:      true,
			GUID:               deriveGUID(spec.Seed, "gpt-disk"),
			Partitions: []*gpt.Partition{{
				Index: 1,
				Start: espStartLBA,
				Size:  uint64(espSize),
				Type:  gpt.EFISystemPartition,
				Name:  "EFI System Partition",
				GUID:  deriveGUID(spec.Seed, "gpt-esp"),
			}},
		}
		w, err := file.New(f, false).Writable()
		if err != nil {
			return err
		}
		if err := table.Write(w, diskSize); err != nil {
			return fmt.Errorf("GPT: %w", err)
		}
		return writeFAT(f, espStartLBA*sectorSize, espSize, true, spec.volumeLabel(11),
			deriveUint32(spec.Seed, "esp-volume-id"), spec.Epoch, files, espStartLBA)
	})
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	return nil
}
