package hostfile

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Mem is the host's memory as /proc/meminfo tells it, in MiB.
type Mem struct {
	TotalMiB     int64 // MemTotal
	AvailableMiB int64 // MemAvailable: what can be had without swapping
}

// ReadMem reads /proc/meminfo.
func ReadMem() (Mem, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return Mem{}, err
	}
	defer f.Close()
	m, err := ParseMem(io.LimitReader(f, 64<<10))
	if err != nil {
		return m, fmt.Errorf("/proc/meminfo: %w", err)
	}
	return m, nil
}

// ParseMem reads MemTotal and MemAvailable from meminfo's format.
func ParseMem(r io.Reader) (Mem, error) {
	var m Mem
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		kib, err := strconv.ParseInt(fields[1], 10, 64)
		if err != nil {
			continue
		}
		switch fields[0] {
		case "MemTotal:":
			m.TotalMiB = kib / 1024
		case "MemAvailable:":
			m.AvailableMiB = kib / 1024
		}
	}
	if err := sc.Err(); err != nil {
		return m, err
	}
	if m.TotalMiB == 0 {
		return m, fmt.Errorf("no MemTotal")
	}
	return m, nil
}
