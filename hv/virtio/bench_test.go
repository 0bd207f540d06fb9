package virtio

import (
	"os"
	"testing"
)

// BenchmarkBlockRead measures a 64 KiB read request through the virtqueue
// (descriptor walk, bounds checks, used ring, interrupt and ACK) next to
// the bare pread of the same bytes into the same buffer, its floor.
func BenchmarkBlockRead(b *testing.B) {
	const n = 64 << 10
	r := newRig(b, 1024, false) // 512 KiB disk, in the page cache
	r.initDriver(FeatureVersion1)
	b.Run("virtio", func(b *testing.B) {
		b.SetBytes(n)
		for i := 0; i < b.N; i++ {
			sector := uint64(i%8) * (n / SectorSize)
			st := r.request(0, BlkTIn, sector, 0x80000, n, true)
			r.submit(0)
			if r.mem[st] != BlkSOK {
				b.Fatalf("status %d", r.mem[st])
			}
			r.w32(RegInterruptACK, InterruptUsedRing)
		}
	})
	b.Run("pread", func(b *testing.B) {
		f, err := os.Open(r.file)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		b.SetBytes(n)
		for i := 0; i < b.N; i++ {
			if _, err := f.ReadAt(r.mem[0x80000:0x80000+n], int64(i%8)*n); err != nil {
				b.Fatal(err)
			}
		}
	})
}
