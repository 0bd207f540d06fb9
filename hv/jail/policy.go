package jail

import (
	"golang.org/x/sys/unix"
)

// The hv's allowlists, one per thread kind. Go's scheduler moves
// goroutines between threads, so the device and I/O goroutines and the
// control goroutines share threads and one filter: Process, installed
// on every thread with TSYNC. Only a vCPU goroutine owns its thread
// (runtime.LockOSThread, and the thread dies with it), so only vCPU
// threads can carry a tighter filter of their own, VCPU, stacked on
// Process. The lists come from reading the hv's code and Go's runtime
// and were checked by running the hv's tests in the lab (docs/security.md).

// runtimeRules is what Go's runtime does on any thread once it runs:
// memory, locks, signals (preemption, the vCPU kick), timers, thread
// exit, and writing a fatal error to stderr.
var runtimeRules = []Rule{
	{Nr: unix.SYS_FUTEX},
	{Nr: unix.SYS_MMAP},
	{Nr: unix.SYS_MUNMAP},
	{Nr: unix.SYS_MADVISE},
	{Nr: unix.SYS_RT_SIGPROCMASK},
	{Nr: unix.SYS_RT_SIGRETURN},
	{Nr: unix.SYS_SIGALTSTACK},
	{Nr: unix.SYS_SCHED_YIELD},
	{Nr: unix.SYS_NANOSLEEP},
	{Nr: unix.SYS_CLOCK_NANOSLEEP},
	{Nr: unix.SYS_CLOCK_GETTIME},
	{Nr: unix.SYS_GETTIMEOFDAY},
	{Nr: unix.SYS_RESTART_SYSCALL},
	{Nr: unix.SYS_GETTID},
	{Nr: unix.SYS_GETPID},
	{Nr: unix.SYS_TGKILL},
	{Nr: unix.SYS_EXIT},
	{Nr: unix.SYS_EXIT_GROUP},
	{Nr: unix.SYS_WRITE},
}

// kvmIoctl allows ioctl only with a KVM request (type byte KVMIO, 0xAE,
// in bits 8-15 of the request): not on terminals, sockets or disks.
var kvmIoctl = Rule{Nr: unix.SYS_IOCTL, Arg: 1, Shift: 8, Mask: 0xff, Value: 0xae}

// tunOffloadIoctl allows the one tap ioctl the virtio-net device makes
// once running, TUNSETOFFLOAD, exactly: when the driver starts or resets
// the device (on the vCPU thread that wrote its Status register), the
// tap's offloads follow what the guest accepted. It can change nothing
// but which checksum and segmentation offloads the tap hands to the hv.
var tunOffloadIoctl = Rule{Nr: unix.SYS_IOCTL, Arg: 1, Mask: 0xffffffff, Value: unix.TUNSETOFFLOAD}

// vcpuRules is a vCPU thread's own work: KVM_RUN and the vCPU ioctls,
// and the exits it serves itself: port and MMIO devices, the virtio-blk
// requests (positioned reads and writes, flush), the virtio-net tap's
// offloads, console output and the log (write), and the kick of the
// other vCPUs when the domain ends.
var vcpuRules = []Rule{
	kvmIoctl,
	tunOffloadIoctl,
	{Nr: unix.SYS_PREAD64},
	{Nr: unix.SYS_PWRITE64},
	{Nr: unix.SYS_FSYNC},
	{Nr: unix.SYS_FDATASYNC},
}

// processRules adds what the device, I/O and control goroutines do:
// serve the console and control sockets (accept, read, write through the
// netpoller; recvmsg for a file passed with a save request), move virtio-net frames (read and writev on the tap, through
// the netpoller), read vCPU run times from /proc, write exit.json atomically
// (create, fchmod, fsync, rename), remove the sockets at exit, start
// threads for the Go runtime (clone, only with CLONE_THREAD: never a new
// process), install each vCPU's filter, and connect virtio-vsock's
// guest-initiated connections to <uds>_PORT (a Unix stream socket only;
// connect's address is a pointer seccomp cannot read, see
// docs/security.md).
var processRules = []Rule{
	{Nr: unix.SYS_SOCKET, Arg: 0, Mask: 0xffffffff, Value: unix.AF_UNIX,
		And: &Rule{Arg: 1, Mask: sockTypeMask, Value: unix.SOCK_STREAM}},
	{Nr: unix.SYS_CONNECT},
	// recvmsg only as Go's net reads a Unix socket, with
	// MSG_CMSG_CLOEXEC: the control socket, whose save request comes
	// with the file to write (SCM_RIGHTS; the jailed hv opens none).
	{Nr: unix.SYS_RECVMSG, Arg: 2, Mask: 0xffffffff, Value: unix.MSG_CMSG_CLOEXEC},
	{Nr: unix.SYS_READ},
	{Nr: unix.SYS_WRITEV},
	{Nr: unix.SYS_CLOSE},
	{Nr: unix.SYS_ACCEPT4},
	{Nr: unix.SYS_SHUTDOWN},
	{Nr: unix.SYS_GETSOCKNAME},
	{Nr: unix.SYS_GETPEERNAME},
	{Nr: unix.SYS_GETSOCKOPT},
	{Nr: unix.SYS_SETSOCKOPT},
	{Nr: unix.SYS_EPOLL_CTL},
	{Nr: unix.SYS_EPOLL_WAIT},
	{Nr: unix.SYS_EPOLL_PWAIT},
	{Nr: unix.SYS_EPOLL_PWAIT2},
	{Nr: unix.SYS_EPOLL_CREATE1},
	{Nr: unix.SYS_EVENTFD2},
	{Nr: unix.SYS_OPENAT},
	{Nr: unix.SYS_FSTAT},
	{Nr: unix.SYS_NEWFSTATAT},
	{Nr: unix.SYS_STATX},
	{Nr: unix.SYS_LSEEK},
	{Nr: unix.SYS_FCNTL},
	{Nr: unix.SYS_FCHMOD},
	{Nr: unix.SYS_FTRUNCATE}, // hv/logfile, when a rotation's rename fails
	{Nr: unix.SYS_DUP3},      // hv/logfile: hv.log is fd 2 again after rotating
	{Nr: unix.SYS_RENAME},
	{Nr: unix.SYS_RENAMEAT},
	{Nr: unix.SYS_RENAMEAT2},
	{Nr: unix.SYS_UNLINK},
	{Nr: unix.SYS_UNLINKAT},
	{Nr: unix.SYS_CLONE, Arg: 0, Mask: unix.CLONE_THREAD, Value: unix.CLONE_THREAD},
	{Nr: unix.SYS_SECCOMP},
	{Nr: unix.SYS_RT_SIGACTION},
	{Nr: unix.SYS_SCHED_GETAFFINITY},
}

// sockTypeMask is SOCK_TYPE_MASK: the type without SOCK_NONBLOCK and
// SOCK_CLOEXEC, which Go always adds.
const sockTypeMask = 0xf

// VCPU is the allowlist of a vCPU thread.
func VCPU() []Rule { return Union(vcpuRules, runtimeRules) }

// Process is the allowlist of every thread: the union of all kinds.
func Process() []Rule { return Union(vcpuRules, runtimeRules, processRules) }
