// Package virtio emulates virtio devices on the virtio-mmio transport
// (version 2, "modern") with split virtqueues: mmio.go is the transport
// (registers, status and feature negotiation, interrupts), queue.go the
// virtqueue, and a device type implements Device (block.go, served on
// the notify) or QueueDevice (vsock.go: three queues, completions driven
// by its own goroutines).
//
// Everything the guest controls is bounded before use: the queue size, the
// ring addresses, every descriptor index, chain length and buffer, and the
// avail index; a device bounds what it reads from the buffers. A malformed
// ring puts the device in DEVICE_NEEDS_RESET and it stops processing until
// the driver resets it; a bad request inside a well-formed chain completes
// with the device's error status. No guest value can make the hv panic or
// touch memory outside guest RAM.
package virtio
