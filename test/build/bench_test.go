package build

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkBuildMinimal times `xeno build recipes/minimal.toml` with an
// empty cache directory (every .deb downloaded, the kernel imported,
// xeno-init compiled, every output written) and again with the cache
// filled, next to the peer: `apt-get download` of the same five packages,
// the part of a cold build no builder can avoid.
func BenchmarkBuildMinimal(b *testing.B) {
	var cold, warm, apt time.Duration
	for i := 0; i < b.N; i++ {
		cache := b.TempDir()
		run := func() time.Duration {
			out := b.TempDir()
			start := time.Now()
			_, stderr, err := xeno(b, []string{"XENO_CACHE=" + cache}, "", "build", "--cache", cache, "-o", out, "recipes/minimal.toml")
			if err != nil {
				b.Fatalf("xeno build: %v\n%s", err, stderr)
			}
			return time.Since(start)
		}
		cold += run()
		warm += run()

		dir := b.TempDir()
		os.Chmod(dir, 0o777) // apt downloads as _apt
		cmd := exec.Command("apt-get", "download", "-q",
			"linux-image-6.1.0-56-cloud-amd64-unsigned=6.1.192-2", "busybox-static=1:1.35.0-4+deb12u1+b1",
			"isolinux=3:6.04~git20190206.bf6db5b4+dfsg1-3", "syslinux-common=3:6.04~git20190206.bf6db5b4+dfsg1-3",
			"systemd-boot-efi=252.39-1~deb12u2")
		cmd.Dir = dir
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("apt-get download: %v\n%s", err, out)
		}
		apt += time.Since(start)
		if m, _ := filepath.Glob(filepath.Join(dir, "*.deb")); len(m) != 5 {
			b.Fatalf("apt-get download left %d .debs", len(m))
		}
	}
	n := float64(b.N)
	b.ReportMetric(cold.Seconds()/n, "cold-s")
	b.ReportMetric(warm.Seconds()/n, "warm-s")
	b.ReportMetric(apt.Seconds()/n, "apt-download-s")
	fmt.Printf("\n%-44s %10s\n", "recipes/minimal.toml (5 outputs)", "seconds")
	fmt.Printf("%-44s %10.2f\n", "xeno build, cold (empty cache)", cold.Seconds()/n)
	fmt.Printf("%-44s %10.2f\n", "xeno build, warm (cache filled)", warm.Seconds()/n)
	fmt.Printf("%-44s %10.2f\n", "peer: apt-get download of the 5 .debs alone", apt.Seconds()/n)
}
