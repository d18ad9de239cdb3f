#!/usr/bin/env bash
# make-arm64-cases.sh - aarch64 cores written by a real arm64 Linux kernel (Debian bookworm's
# cloud-arm64 kernel under qemu-system-aarch64 -cpu max: pointer authentication on).
#
#   test/cases/make-arm64-cases.sh [arm64-pac] [arm64-signal-frame]   (default: both)
#   FORCE=1 ...  rebuild even if the cases exist;  CASES_DIR as for make-cases.sh
#
# Cases (sources in src/, shared with the x86_64 cases):
#   arm64-pac           src/crash.c built with -mbranch-protection=pac-ret+leaf: every function
#                       signs x30 (paciasp) before saving it, so the return addresses in the core
#                       carry a PAC in their top bits; NT_ARM_PAC_MASK says which bits to strip.
#   arm64-signal-frame  src/signal_handler.c: SIGSEGV handler -> abort(); the handler returns
#                       through the vDSO's __kernel_rt_sigreturn, whose code and CFI exist only
#                       in the core's memory (the vDSO is not a file).
# Output: $CASES_DIR/<case>/{exe,core,expected.json,meta,run.stdout,gdb-bt.txt,gdb-check.json,
#         arm64-check.json} and $CASES_DIR/arm64-sysroot (the guest's ld.so + libc, their
#         libc6-dbg debug files under usr/lib/debug/.build-id, and cases -> .. because the guest
#         ran /cases/<case>/exe). Work files: $CASES_DIR/.arm64-work (debs cache, apt state,
#         kernel, rootfs, console log).
# The arm64 .debs are taken from the shared corpus's cache ($CORESNAP_CORPUS_DIR/arm64/debs) when
# present, else downloaded with apt-get into a private apt state (no dpkg --add-architecture).
set -euo pipefail
umask 022
export LC_ALL=C
unset DEBUGINFOD_URLS || true
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${CASES_DIR:-${CORESNAP_CORPUS_DIR:-/tmp/coresnap-corpus}/cases}
SHARED_DEBS=${CORESNAP_CORPUS_DIR:-/tmp/coresnap-corpus}/arm64/debs
TOOLS=${CORESNAP_CORPUS_TOOLS:-/work/shared/corpus/tools}
WORK=$OUT/.arm64-work
SYSROOT=$OUT/arm64-sysroot
FORCE=${FORCE:-0}
QEMU_TIMEOUT=${QEMU_TIMEOUT:-900}
PY=/usr/bin/python3
log() { printf '[make-arm64-cases] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# case -> source, flags
declare -A CASE_SRC=([arm64-pac]=crash.c [arm64-signal-frame]=signal_handler.c)
declare -A CASE_FLAGS=([arm64-pac]="-O2 -g -pthread -mbranch-protection=pac-ret+leaf"
                       [arm64-signal-frame]="-O2 -g -pthread")
SELECTED=("$@")
((${#SELECTED[@]})) || SELECTED=(arm64-pac arm64-signal-frame)
TODO=()
for c in "${SELECTED[@]}"; do
  [[ -n ${CASE_SRC[$c]:-} ]] || die "unknown arm64 case '$c'"
  if [[ $FORCE != 1 && -s $OUT/$c/core && -s $OUT/$c/expected.json && -s $OUT/$c/meta ]]; then
    log "$c: exists, skipping (FORCE=1 to rebuild)"
  else TODO+=("$c"); fi
done
((${#TODO[@]})) || exit 0
[[ -f $TOOLS/finish_case.py ]] || die "corpus tools not found in $TOOLS (set CORESNAP_CORPUS_TOOLS)"

# ---------------------------------------------------------------- 1. host tools
need=()
for p in qemu-system-arm gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu gdb-multiarch cpio file; do
  [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == "install ok installed" ]] || need+=("$p")
done
if ((${#need[@]})); then
  log "apt-get install ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# ---------------------------------------------------------------- 2. arm64 .debs
mkdir -p "$WORK/debs"
DEBS=$WORK/debs
have_deb() { ls "$DEBS/${1}"_*_arm64.deb >/dev/null 2>&1; }
# the kernel package: whatever the shared cache holds, else what linux-image-cloud-arm64 depends on
KPKG=$(cd "$DEBS" && ls linux-image-*-cloud-arm64_*_arm64.deb 2>/dev/null | head -1 | cut -d_ -f1 || true)
[[ -n $KPKG ]] || KPKG=$(cd "$SHARED_DEBS" 2>/dev/null && ls linux-image-*-cloud-arm64_*_arm64.deb 2>/dev/null | head -1 | cut -d_ -f1 || true)
PKGS=(busybox-static libc6 libc6-dbg)
for p in "${PKGS[@]}" ${KPKG:+"$KPKG"}; do
  have_deb "$p" || cp "$SHARED_DEBS/${p}"_*_arm64.deb "$DEBS/" 2>/dev/null || true
done
missing=()
for p in "${PKGS[@]}"; do have_deb "$p" || missing+=("$p"); done
if [[ -z $KPKG ]] || ! have_deb "$KPKG" || ((${#missing[@]})); then
  mkdir -p "$WORK/apt/state/lists/partial" "$WORK/apt/cache/archives/partial"
  cat > "$WORK/apt/apt.conf" <<EOF
APT::Architecture "arm64";
APT::Architectures { "arm64"; };
Dir::State "$WORK/apt/state";
Dir::State::status "$WORK/apt/state/status";
Dir::Cache "$WORK/apt/cache";
Dir::Etc::SourceList "/etc/apt/sources.list.d/debian.sources";
Dir::Etc::SourceParts "/nonexistent";
EOF
  touch "$WORK/apt/state/status"
  export APT_CONFIG=$WORK/apt/apt.conf
  ls "$WORK"/apt/state/lists/*Packages* >/dev/null 2>&1 || { log "apt-get update (arm64 indexes, private state)"; apt-get update -qq; }
  [[ -n $KPKG ]] || KPKG=$(apt-cache depends linux-image-cloud-arm64 | awk '/Depends: linux-image-/{print $2; exit}')
  for p in "${PKGS[@]}" "$KPKG"; do
    have_deb "$p" || { log "apt-get download $p"; (cd "$DEBS" && apt-get download -qq "$p"); }
  done
  unset APT_CONFIG
fi
KREL=${KPKG#linux-image-}

# ---------------------------------------------------------------- 3. rootfs + kernel
BUILD=$WORK/build
rm -rf "$BUILD"; mkdir -p "$BUILD/kernel"
RFS=$BUILD/rootfs; mkdir -p "$RFS"
for p in busybox-static libc6; do dpkg-deb -x "$DEBS/${p}"_*_arm64.deb "$RFS"; done
dpkg-deb -x "$DEBS/${KPKG}"_*_arm64.deb "$BUILD/kernel"
for d in lib bin sbin; do     # merged /usr like a bookworm system
  if [[ -d $RFS/$d && ! -L $RFS/$d ]]; then
    mkdir -p "$RFS/usr/$d"; cp -a "$RFS/$d/." "$RFS/usr/$d/"; rm -rf "${RFS:?}/$d"
  fi
  mkdir -p "$RFS/usr/$d"; ln -sfn "usr/$d" "$RFS/$d"
done
rm -rf "$RFS/usr/share/doc" "$RFS/usr/share/man" "$RFS/usr/share/lintian" "$RFS/usr/lib/aarch64-linux-gnu/gconv"
KIMG=$BUILD/kernel/boot/vmlinuz-$KREL
if [[ $(file -bL "$KIMG") == gzip* ]]; then zcat "$KIMG" > "$BUILD/Image"; else cp "$KIMG" "$BUILD/Image"; fi
mkdir -p "$RFS/modules"
for m in drivers/virtio/virtio.ko drivers/virtio/virtio_ring.ko drivers/virtio/virtio_mmio.ko drivers/block/virtio_blk.ko; do
  cp "$BUILD/kernel/lib/modules/$KREL/kernel/$m" "$RFS/modules/"
done

# ---------------------------------------------------------------- 4. cross-compile the cases
mkdir -p "$RFS/cases"; : > "$RFS/cases/cases.txt"
for c in "${TODO[@]}"; do
  d=$OUT/$c; rm -rf "$d"; mkdir -p "$d"
  log "$c: aarch64-linux-gnu-gcc ${CASE_FLAGS[$c]} src/${CASE_SRC[$c]}"
  # shellcheck disable=SC2086
  aarch64-linux-gnu-gcc ${CASE_FLAGS[$c]} -o "$d/exe" "$HERE/src/${CASE_SRC[$c]}"
  mkdir -p "$RFS/cases/$c"; cp "$d/exe" "$RFS/cases/$c/exe"
  echo "$c" >> "$RFS/cases/cases.txt"
done

# ---------------------------------------------------------------- 5. initramfs + boot
cp "$HERE/arm64/guest-init.sh" "$RFS/init"; chmod 755 "$RFS/init"
mkdir -p "$RFS/dev" "$RFS/proc" "$RFS/sys" "$RFS/out" "$RFS/tmp"
mknod -m 600 "$RFS/dev/console" c 5 1
mknod -m 666 "$RFS/dev/null" c 1 3
(cd "$RFS" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1 > "$BUILD/initramfs.cpio.gz")
truncate -s 256M "$BUILD/out.img"
log "booting qemu-system-aarch64 -cpu max (timeout ${QEMU_TIMEOUT}s), console: $BUILD/console.log"
set +e
timeout "$QEMU_TIMEOUT" qemu-system-aarch64 \
  -machine virt,gic-version=3 -cpu max,pauth-impdef=on -accel tcg,thread=multi \
  -smp 2 -m 1024 -display none -monitor none -nic none -no-reboot \
  -serial "file:$BUILD/console.log" \
  -kernel "$BUILD/Image" -initrd "$BUILD/initramfs.cpio.gz" \
  -append "console=ttyAMA0 rdinit=/init panic=-1 loglevel=6" \
  -drive "file=$BUILD/out.img,format=raw,if=none,id=out0" -device virtio-blk-device,drive=out0 \
  < /dev/null
QRC=$?
set -e
[[ $QRC == 0 ]] || { tail -30 "$BUILD/console.log" >&2; die "qemu failed or timed out (rc $QRC)"; }
mkdir -p "$BUILD/out"
tar -xf "$BUILD/out.img" -C "$BUILD/out"
cat "$BUILD/out/runs.txt" >&2

# ---------------------------------------------------------------- 6. sysroot
rm -rf "$SYSROOT"
mkdir -p "$SYSROOT/usr/lib/aarch64-linux-gnu" "$SYSROOT/usr/lib/debug/.build-id"
ln -sfn usr/lib "$SYSROOT/lib"
ln -sfn .. "$SYSROOT/cases"          # NT_FILE names the exes /cases/<case>/exe
for f in ld-linux-aarch64.so.1 libc.so.6; do cp -a "$RFS/usr/lib/aarch64-linux-gnu/$f" "$SYSROOT/usr/lib/aarch64-linux-gnu/"; done
cp -a "$RFS/usr/lib/ld-linux-aarch64.so.1" "$SYSROOT/usr/lib/"
DBG=$BUILD/libc6-dbg; mkdir -p "$DBG"; dpkg-deb -x "$DEBS"/libc6-dbg_*_arm64.deb "$DBG"
for f in ld-linux-aarch64.so.1 libc.so.6; do
  bid=$(readelf -n "$SYSROOT/usr/lib/aarch64-linux-gnu/$f" | awk '/Build ID/{print $3}')
  src=$DBG/usr/lib/debug/.build-id/${bid:0:2}/${bid:2}.debug
  [[ -f $src ]] || die "libc6-dbg has no debug file for $f ($bid)"
  mkdir -p "$SYSROOT/usr/lib/debug/.build-id/${bid:0:2}"; cp "$src" "$SYSROOT/usr/lib/debug/.build-id/${bid:0:2}/"
done
cp "$BUILD/out/guest-info.txt" "$SYSROOT/guest-info.txt"
cat > "$SYSROOT/README.txt" <<EOF
arm64 Debian bookworm ld.so + libc exactly as mapped in the guest (merged /usr, lib -> usr/lib),
from $(cd "$DEBS" && ls libc6_*_arm64.deb); their debug files (libc6-dbg) under usr/lib/debug/.build-id.
cases -> .. : the guest ran each case as /cases/<case>/exe. Kernel: $KPKG under qemu -cpu max.
gdb-multiarch: set sysroot <this dir>; set debug-file-directory <this dir>/usr/lib/debug
EOF
grep -qw paca "$SYSROOT/guest-info.txt" || die "the guest CPU has no pointer authentication (no 'paca' in /proc/cpuinfo)"

# ---------------------------------------------------------------- 7. cases: expected.json, meta, checks
for c in "${TODO[@]}"; do
  d=$OUT/$c
  [[ -s $BUILD/out/$c.core ]] || die "$c: the guest wrote no core (see $BUILD/console.log)"
  cp --sparse=always "$BUILD/out/$c.core" "$d/core"
  cp "$BUILD/out/$c.stdout" "$d/run.stdout"; cp "$BUILD/out/$c.stderr" "$d/run.stderr"
  gen="aarch64-linux-gnu-gcc ${CASE_FLAGS[$c]} -o exe src/${CASE_SRC[$c]} ($(aarch64-linux-gnu-gcc --version | head -1)); run as /cases/$c/exe under $KPKG, qemu-system-aarch64 -cpu max,pauth-impdef=on"
  case $c in
  arm64-pac)
    "$PY" "$TOOLS/finish_case.py" "$d" --signal 11 --match prefix --frames 'level3,level2,level1,main' \
      --other-contains idle_worker --sysroot "$SYSROOT" --debug-dir "$SYSROOT/usr/lib/debug" \
      --gen "$gen" --lang C --opt O2 --src "$HERE/src/${CASE_SRC[$c]}" \
      --note "return addresses (x30 and the saved copies on the stack) are PAC-signed: strip NT_ARM_PAC_MASK's insn_mask before using them; see arm64-check.json"
    "$PY" "$HERE/tools/arm64_check.py" pac "$d/core" "/cases/$c/exe" > "$d/arm64-check.json" ||
      die "$c: return addresses are not PAC-signed (see $d/arm64-check.json)"
    ;;
  arm64-signal-frame)
    "$PY" "$TOOLS/finish_case.py" "$d" --signal 6 --match after-top \
      --frames 'abort,handler_helper,handler,<signal>,level3,level2,level1,main' \
      --top-in-module libc.so.6 --other-contains idle_worker --sysroot "$SYSROOT" --debug-dir "$SYSROOT/usr/lib/debug" \
      --gen "$gen" --lang C --opt O2 --src "$HERE/src/${CASE_SRC[$c]}" \
      --note "<signal> = the vDSO's __kernel_rt_sigreturn frame; the vDSO exists only in the core's memory (see arm64-check.json)"
    "$PY" "$HERE/tools/arm64_check.py" vdso "$d/core" > "$d/arm64-check.json" ||
      die "$c: the vDSO is not in the core (see $d/arm64-check.json)"
    ;;
  esac
  ( cd "$d" && timeout 300 gdb-multiarch -batch -nx -iex 'set auto-load off' \
      -ex "set sysroot $SYSROOT" -ex "set debug-file-directory $SYSROOT/usr/lib/debug" \
      -ex 'set backtrace past-main on' -ex 'file exe' -ex 'core-file core' \
      -ex 'info threads' -ex 'thread apply all bt' > gdb-bt.txt 2>&1 ) || true
  "$PY" "$HERE/tools/verify.py" core "$d" || die "$c: gdb-multiarch and expected.json disagree (see $d/gdb-check.json)"
  log "$c: gdb-multiarch agrees with expected.json"
done
cp "$BUILD/console.log" "$WORK/console.log"
rm -rf "$BUILD/out" "$BUILD/rootfs" "$BUILD/kernel" "$BUILD/libc6-dbg" "$BUILD/out.img"
log "done: ${TODO[*]}"
