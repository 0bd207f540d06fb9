package kernels_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/internal/testenv"
	"github.com/xeno-hv/xeno/kernels"
	"github.com/xeno-hv/xeno/kernels/kerneltest"
	"github.com/xeno-hv/xeno/kernels/kformat"
)

// BenchmarkDecompress times our Go decompression of the real kernels'
// payloads next to the reference tool (lz4 -d, zstd -d) on the same bytes,
// in the same run. The tool writes to /dev/null and we to memory, so the
// tool's figure includes process start and the write; both are what a
// loader would pay.
func BenchmarkDecompress(b *testing.B) {
	for _, pin := range []struct{ pkg, version, tool string }{
		{kerneltest.Cloud56, kerneltest.Cloud56Version, "lz4"},
		{kerneltest.Cloud612, kerneltest.Cloud612Version, "zstd"},
	} {
		b.Run(pin.tool, func(b *testing.B) {
			k := kerneltest.Kernel(b, pin.pkg, pin.version)
			bz, err := k.BzImage()
			if err != nil {
				b.Fatal(err)
			}
			h, err := kformat.ParseSetupHeader(bz)
			if err != nil {
				b.Fatal(err)
			}
			payload := h.Payload(bz)
			tool := testenv.RequireCmd(b, pin.tool)
			in := filepath.Join(b.TempDir(), "payload")
			if err := os.WriteFile(in, payload[:len(payload)-4], 0o644); err != nil {
				b.Fatal(err)
			}
			var ours, peer time.Duration
			var size int
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				v, err := kformat.Decompress(bz)
				if err != nil {
					b.Fatal(err)
				}
				ours += time.Since(t0)
				size = len(v)
				t0 = time.Now()
				cmd := exec.Command(tool, "-dc", in)
				devnull, _ := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
				cmd.Stdout = devnull
				err = cmd.Run()
				devnull.Close()
				if err != nil {
					b.Fatalf("%s -dc: %v", tool, err)
				}
				peer += time.Since(t0)
			}
			n := float64(b.N)
			b.ReportMetric(float64(ours.Milliseconds())/n, "go-ms/op")
			b.ReportMetric(float64(peer.Milliseconds())/n, pin.tool+"-ms/op")
			b.ReportMetric(float64(size)/(1<<20)/(ours.Seconds()/n), "go-MB/s")
			fmt.Printf("\n%-8s %-26s vmlinux %5.1f MiB   xeno (Go) %7.1f ms   %s -d %7.1f ms\n",
				pin.tool, k.Release, float64(size)/(1<<20), ours.Seconds()*1000/n, pin.tool, peer.Seconds()*1000/n)
		})
	}
}

// BenchmarkImportDeb times importing the 6.1 cloud .deb into an empty
// store (ar, xz-decoding ~100 MiB of data.tar, hashing and writing 1100
// modules) next to dpkg-deb -x of the same file, in the same run.
func BenchmarkImportDeb(b *testing.B) {
	k := kerneltest.Kernel(b, kerneltest.Cloud56, kerneltest.Cloud56Version)
	m, _ := filepath.Glob(filepath.Join(kernels.DefaultCacheDir(), "debs", k.Package+"_"+k.Version+"_*.deb"))
	if len(m) != 1 {
		b.Fatalf("cached .deb for %s: %v", k.Package, m)
	}
	dpkg := testenv.RequireCmd(b, "dpkg-deb")
	var ours, peer time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s, err := kernels.Open(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if _, err := s.ImportDeb(m[0]); err != nil {
			b.Fatal(err)
		}
		ours += time.Since(t0)
		t0 = time.Now()
		if out, err := exec.Command(dpkg, "-x", m[0], b.TempDir()).CombinedOutput(); err != nil {
			b.Fatalf("dpkg-deb -x: %v\n%s", err, out)
		}
		peer += time.Since(t0)
	}
	n := float64(b.N)
	b.ReportMetric(ours.Seconds()/n, "go-s/op")
	b.ReportMetric(peer.Seconds()/n, "dpkg-deb-s/op")
	fmt.Printf("\nimport %s   xeno ImportDeb %6.2f s   dpkg-deb -x %6.2f s\n", filepath.Base(m[0]), ours.Seconds()/n, peer.Seconds()/n)
}
