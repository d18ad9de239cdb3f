#!/usr/bin/python3
"""Facts about an arm64 core that the arm64-* cases rely on, read straight from the core
(no dependencies), so a case whose premise does not hold fails at generation time.

  arm64_check.py pac  CORE EXE-SUFFIX  -> the crashing thread's x30 and the return addresses
        saved on its stack are PAC-signed: with NT_ARM_PAC_MASK's insn_mask cleared they point
        into the executable's text, without clearing they do not. Needs >= 2 signed stack slots.
  arm64_check.py vdso CORE             -> the vDSO (AT_SYSINFO_EHDR) is dumped in a PT_LOAD with
        file bytes (its code, __kernel_rt_sigreturn included, is only in the core).
Prints a JSON report; exit 1 if the premise does not hold."""
import json, struct, sys

NT_PRSTATUS, NT_AUXV, NT_FILE, NT_ARM_PAC_MASK = 1, 6, 0x46494C45, 0x406
AT_SYSINFO_EHDR = 33


def read_core(path):
    data = open(path, "rb").read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        sys.exit("%s: not a little-endian ELF64 file" % path)
    e_type, e_machine = struct.unpack_from("<HH", data, 16)
    if e_type != 4 or e_machine != 183:
        sys.exit("%s: not an aarch64 core" % path)
    e_phoff, = struct.unpack_from("<Q", data, 32)
    e_phentsize, e_phnum = struct.unpack_from("<HH", data, 54)
    loads, notes = [], []
    for i in range(e_phnum):
        p_type, _, off, vaddr, _, filesz, memsz, _ = struct.unpack_from("<IIQQQQQQ", data, e_phoff + i * e_phentsize)
        if p_type == 1:
            loads.append((vaddr, memsz, off, filesz))
        elif p_type == 4:
            p = off
            while p + 12 <= off + filesz:
                namesz, descsz, ntype = struct.unpack_from("<III", data, p)
                q = p + 12 + ((namesz + 3) & ~3)
                notes.append((data[p + 12:p + 12 + namesz].rstrip(b"\0"), ntype, data[q:q + descsz]))
                p = q + ((descsz + 3) & ~3)
    return data, loads, notes


def reader(data, loads):
    def read_u64(addr):
        for vaddr, memsz, off, filesz in loads:
            if vaddr <= addr and addr + 8 <= vaddr + filesz:
                return struct.unpack_from("<Q", data, off + addr - vaddr)[0]
        return None
    return read_u64


def nt_file(notes):
    for name, ntype, desc in notes:
        if name == b"CORE" and ntype == NT_FILE:
            count, _ = struct.unpack_from("<QQ", desc, 0)
            names = desc[16 + 24 * count:].split(b"\0")
            return [struct.unpack_from("<QQQ", desc, 16 + 24 * i) + (names[i].decode(),) for i in range(count)]
    return []


def check_pac(path, exe_suffix):
    data, loads, notes = read_core(path)
    prstatus = [d for n, t, d in notes if n == b"CORE" and t == NT_PRSTATUS]
    masks = [d for n, t, d in notes if n == b"LINUX" and t == NT_ARM_PAC_MASK]
    report, problems = {"core": path}, []
    if not prstatus:
        sys.exit("%s: no NT_PRSTATUS" % path)
    regs = struct.unpack_from("<34Q", prstatus[0], 112)          # x0..x30, sp, pc, pstate
    if not masks:
        problems.append("no NT_ARM_PAC_MASK note: the guest CPU/kernel did not enable pointer authentication")
        insn_mask = 0
    else:
        data_mask, insn_mask = struct.unpack_from("<QQ", masks[0], 0)
        report["pac_mask"] = {"data_mask": hex(data_mask), "insn_mask": hex(insn_mask)}
    text = [(s, e) for s, e, _, p in nt_file(notes) if p.endswith(exe_suffix)]
    in_exe = lambda a: any(s <= a < e for s, e in text)
    strip = lambda v: v & ~insn_mask
    report["x30"] = hex(regs[30])
    report["x30_signed"] = regs[30] != strip(regs[30]) and in_exe(strip(regs[30]))
    read_u64 = reader(data, loads)
    sp, signed = regs[31], []
    for slot in range(sp, sp + 4096, 8):        # the crashing frames sit in the first few hundred bytes
        v = read_u64(slot)
        if v is not None and v != strip(v) and in_exe(strip(v)):
            signed.append({"slot": hex(slot), "raw": hex(v), "stripped": hex(strip(v))})
    report["signed_return_addresses_on_stack"] = signed
    if not report["x30_signed"]:
        problems.append("x30 (%s) is not a signed pointer into the executable" % hex(regs[30]))
    if len(signed) < 2:
        problems.append("fewer than 2 PAC-signed return addresses on the crashing thread's stack")
    report["problems"] = problems
    return report


def check_vdso(path):
    data, loads, notes = read_core(path)
    auxv = [d for n, t, d in notes if n == b"CORE" and t == NT_AUXV]
    base = None
    if auxv:
        for i in range(0, len(auxv[0]) - 15, 16):
            k, v = struct.unpack_from("<QQ", auxv[0], i)
            if k == AT_SYSINFO_EHDR:
                base = v
    report, problems = {"core": path, "vdso": hex(base) if base else None}, []
    seg = [l for l in loads if base is not None and l[0] <= base < l[0] + l[1]]
    if base is None:
        problems.append("no AT_SYSINFO_EHDR in NT_AUXV")
    elif not seg or seg[0][3] == 0:
        problems.append("the vDSO at %s is not dumped in the core" % hex(base))
    else:
        off = seg[0][2] + base - seg[0][0]
        report["vdso_dumped_bytes"] = seg[0][3]
        if data[off:off + 4] != b"\x7fELF":
            problems.append("no ELF header at the vDSO address in the core")
        elif b"__kernel_rt_sigreturn" not in data[off:off + seg[0][3]]:
            problems.append("the dumped vDSO has no __kernel_rt_sigreturn symbol")
    report["problems"] = problems
    return report


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "pac":
        report = check_pac(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "vdso":
        report = check_vdso(sys.argv[2])
    else:
        sys.exit(__doc__)
    print(json.dumps(report, indent=1))
    for p in report["problems"]:
        print("arm64_check: " + p, file=sys.stderr)
    sys.exit(1 if report["problems"] else 0)


if __name__ == "__main__":
    main()
