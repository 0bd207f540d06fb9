#!/bin/sh
# `make run`: the demo a newcomer sees, one part of xeno after another.
#  1. xeno builds recipes/minimal.toml (kernel+initrd, hybrid ISO, raw EFI disk).
#  2. xl boots it under hv and shows the guest's console (the xeno guest
#     kernel runs on hardware KVM and on the software kvm_pvm); where
#     /dev/kvm is missing, inside the nested-KVM lab (bin/kvmlab).
#  3. QEMU (TCG) boots the same kernel and initramfs, as an outside judge.
#  4. xl runs a domain's whole lifecycle on a micro-guest under hv.
set -eu
cd "$(dirname "$0")/.."
BIN=${XENO_BIN:-$PWD/bin}
OUT=${XENO_DEMO_OUT:-$PWD/out}
export XENO_STATE_DIR=${XENO_STATE_DIR:-$OUT/state}
mkdir -p "$OUT"

step() { printf '\n== %s\n' "$*"; }

step "1. xeno build recipes/minimal.toml -o $OUT"
"$BIN/xeno" build recipes/minimal.toml -o "$OUT"
ls -l "$OUT"/minimal.*

cat >"$OUT/minimal.cfg" <<CFG
# An xl.cfg for the image that step 1 built.
name = "minimal"
type = "pvh"
kernel = "$OUT/minimal.vmlinuz"
ramdisk = "$OUT/minimal.initrd"
cmdline = "console=ttyS0 panic=-1"
memory = 512
vcpus = 2
on_poweroff = "destroy"
# eth0 on the bridge xenbr0 (10.0.0.1, made below in a network namespace
# of the demo's own); xeno-init sets the address, the recipe pings back.
vif = [ 'bridge=xenbr0,ip=10.0.0.2/24,gateway=10.0.0.1' ]
CFG

# The host end of the guest's network: a bridge with the gateway address.
BRIDGE='ip link add xenbr0 type bridge && ip addr add 10.0.0.1/24 dev xenbr0 && ip link set xenbr0 up'

step "2. xl create -c $OUT/minimal.cfg (the image under hv)"
# The dry run's interface decision; its network check would refuse here,
# outside the namespace or lab where the demo makes the bridge.
"$BIN/xl" create -n "$OUT/minimal.cfg" 2>&1 | grep -E '^(interface|kernel|host)' || true
if [ -c /dev/kvm ] && [ -w /dev/kvm ]; then
	# The xeno guest kernel boots under hardware KVM and under the
	# software kvm_pvm alike (docs/kernels.md).
	# In a network namespace of its own, so the host's network is not
	# touched; xl, its monitor and the tap live there.
	timeout 300 unshare --net sh -c "$BRIDGE && \"\$0\" create -c \"\$1\"" "$BIN/xl" "$OUT/minimal.cfg"
else
	KVM_WHY="/dev/kvm is missing"
	if dmesg 2>/dev/null | grep -q 'itself a kvm-pvm guest'; then
		KVM_WHY="$KVM_WHY: this machine is itself a kvm_pvm guest, and its kvm_pvm refuses to bind"
	fi
	echo "hv: $KVM_WHY; so xl and hv run in the nested-KVM lab: a QEMU TCG machine with AMD-V (docs/kvm-notes.md)."
	# The same xl.cfg; the lab's paths, its guest command line and one vCPU
	# (its emulated SVM now and then faults while Linux brings up a second
	# one) come as xl's KEY=VALUE overrides. kvmlab bounds each lab run
	# (5 minutes) and runs it once more if the lab machine itself died.
	timeout 660 "$BIN/kvmlab" --file minimal.cfg="$OUT/minimal.cfg" \
		--file minimal.vmlinuz="$OUT/minimal.vmlinuz" --file minimal.initrd="$OUT/minimal.initrd" '
set -- "kernel=\"$G/minimal.vmlinuz\"" "ramdisk=\"$G/minimal.initrd\"" "cmdline=\"console=ttyS0 panic=-1 $GUEST_EXTRA\"" vcpus=1
'"$BRIDGE"'
echo "\$ xl create -c minimal.cfg $*"
xl create -c $G/minimal.cfg "$@"'
fi

step "3. the same kernel and initramfs under QEMU (TCG), console below"
timeout 180 qemu-system-x86_64 -M pc -accel tcg -m 512 -nodefaults -no-user-config \
	-display none -serial stdio -no-reboot \
	-kernel "$OUT/minimal.vmlinuz" -initrd "$OUT/minimal.initrd" \
	-append "console=ttyS0 panic=-1" </dev/null || {
	echo "demo: QEMU did not finish (exit $?)" >&2
	exit 1
}

if [ -n "${KVM_WHY:-}" ]; then
	step "done (step 4, a micro-guest's xl lifecycle, needs /dev/kvm here; make test runs it in the lab): see README.md for the recipe and xl references, make test for everything"
	exit 0
fi

step "4. an xl domain lifecycle on a micro-guest (test/guests/powerbutton) under hv"
cat >"$OUT/micro.cfg" <<CFG
# A micro-guest that prints a marker and powers off on the ACPI power button.
name = "micro"
type = "pvh"
kernel = "$PWD/test/guests/powerbutton.bin"
memory = 32
vcpus = 1
interface = "1.2"
on_poweroff = "destroy"
CFG
"$BIN/xl" info | grep -E '^(hv_version|hv_caps|hv_build_id|kvm_api_version)'
echo "\$ xl create $OUT/micro.cfg"
"$BIN/xl" create "$OUT/micro.cfg"
echo "\$ xl list -v"
"$BIN/xl" list -v
sleep 1
echo "\$ xl console micro   (its console so far; the demo detaches with ^])"
{ sleep 1; printf '\035'; } | timeout 5 "$BIN/xl" console micro || true
echo
echo "\$ xl shutdown -w micro"
"$BIN/xl" shutdown -w micro
echo "\$ xl list"
"$BIN/xl" list
step "done: see README.md for the recipe and xl references, make test for everything"
