package virtio

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"syscall"
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

// BenchmarkVsockEcho measures one 64-byte round trip between a host
// client and a guest echo through the device: the host writes to its
// Unix socket, the fake guest takes the RW packet from its rx queue and
// sends it back on tx, the host reads it. The peer is the same round
// trip over a bare Unix socket pair with a goroutine echoing, the
// floor the device's goroutines and copies add to.
func BenchmarkVsockEcho(b *testing.B) {
	msg := bytes.Repeat([]byte("x"), 64)
	b.Run("vsock", func(b *testing.B) {
		r := newVsockRig(b)
		r.postRX(vqSize / 2)
		c, req := r.hostConnect(1024)
		hp := req.h.srcPort
		r.send(r.gh(VsockOpResponse, 1024, hp), nil)
		br := bufio.NewReader(c)
		if _, err := br.ReadString('\n'); err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, len(msg))
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			c.Write(msg)
			got := 0
			for got < len(msg) {
				// As a guest does: sleep until the interrupt, ACK, read.
				<-r.irq
				r.w32(RegInterruptACK, InterruptUsedRing)
				for _, p := range r.received() {
					r.postRX(1)
					if p.h.op == VsockOpRW {
						got += len(p.payload)
						h := r.gh(VsockOpRW, 1024, hp)
						h.fwdCount = uint32((i + 1) * len(msg))
						r.send(h, p.payload)
					}
				}
			}
			if _, err := io.ReadFull(br, buf); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("socketpair", func(b *testing.B) {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
		if err != nil {
			b.Fatal(err)
		}
		host, guest := os.NewFile(uintptr(fds[0]), "host"), os.NewFile(uintptr(fds[1]), "guest")
		defer host.Close()
		defer guest.Close()
		go io.Copy(guest, guest)
		buf := make([]byte, len(msg))
		for i := 0; i < b.N; i++ {
			host.Write(msg)
			if _, err := io.ReadFull(host, buf); err != nil {
				b.Fatal(err)
			}
		}
	})
}
