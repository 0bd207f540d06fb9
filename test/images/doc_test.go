// Package images_test boots the images that package images writes in
// QEMU, under SeaBIOS and OVMF, with a real Debian kernel, and checks that
// the kernel reached the test's /init. QEMU runs with TCG: KVM here is
// software and cannot boot a distro kernel in useful time.
package images_test
