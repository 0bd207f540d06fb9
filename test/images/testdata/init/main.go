// Command init is the whole user space of the boot tests' initramfs: it
// proves the kernel found and ran /init by printing a marker on the
// console, then powers the machine off so QEMU exits.
package main

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

func main() {
	// With an initramfs the kernel mounts nothing on /dev; devtmpfs
	// provides the console node the archive does not carry.
	if err := unix.Mount("devtmpfs", "/dev", "devtmpfs", 0, ""); err != nil {
		fmt.Fprintln(os.Stderr, "init: mount /dev:", err)
	}
	cmdline, _ := os.ReadFile("/proc/cmdline")
	con, err := os.OpenFile("/dev/console", os.O_WRONLY, 0)
	if err != nil {
		con = os.Stdout
	}
	if len(cmdline) == 0 {
		if err := unix.Mount("proc", "/proc", "proc", 0, ""); err == nil {
			cmdline, _ = os.ReadFile("/proc/cmdline")
		}
	}
	fmt.Fprintf(con, "\nXENO-IMAGES-INIT-OK cmdline=%s\n", cmdline)
	con.Sync()
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}
