//! The initial process stack a Linux program expects at its entry point:
//! `argc`, the `argv` and `envp` pointer arrays, the auxiliary vector, and the
//! strings and random bytes they point to (System V x86-64 ABI, 3.4.1).

use super::LinuxError;

const AT_NULL: u64 = 0;
const AT_IGNORE: u64 = 1;
/// The value of the auxv entry (AT_IGNORE) reserved for the personality's vDSO:
/// it turns the entry into AT_SYSINFO_EHDR (`LX_AUXV_VDSO_SLOT`,
/// guest/linux/linux_abi.h). Until then every libc skips it.
pub const VDSO_SLOT: u64 = u64::from_le_bytes(*b"lx-vdso\0");
const AT_PHDR: u64 = 3;
const AT_PHENT: u64 = 4;
const AT_PHNUM: u64 = 5;
const AT_PAGESZ: u64 = 6;
const AT_BASE: u64 = 7;
const AT_FLAGS: u64 = 8;
const AT_ENTRY: u64 = 9;
const AT_UID: u64 = 11;
const AT_EUID: u64 = 12;
const AT_GID: u64 = 13;
const AT_EGID: u64 = 14;
const AT_PLATFORM: u64 = 15;
const AT_HWCAP: u64 = 16;
const AT_CLKTCK: u64 = 17;
const AT_SECURE: u64 = 23;
const AT_RANDOM: u64 = 25;
const AT_HWCAP2: u64 = 26;
const AT_EXECFN: u64 = 31;

/// Clock ticks per second the guest reports (`sysconf(_SC_CLK_TCK)`), as Linux.
pub const CLKTCK: u64 = 100;
const PAGE_SIZE: u64 = 4096;
const PLATFORM: &str = "x86_64";

/// What the auxiliary vector tells the program.
#[derive(Debug, Clone)]
pub struct Auxv {
    pub phdr: u64,
    pub phent: u64,
    pub phnum: u64,
    pub entry: u64,
    /// AT_BASE: the ELF interpreter's load bias (0 for a static program).
    pub base: u64,
    pub uid: u32,
    pub gid: u32,
    pub hwcap: u64,
    /// The 16 bytes AT_RANDOM points to (glibc seeds its stack protector from them).
    pub random: [u8; 16],
}

/// The stack image: write `bytes` at `sp`; `sp` is 16-byte aligned and points at argc.
#[derive(Debug)]
pub struct InitialStack {
    pub sp: u64,
    pub bytes: Vec<u8>,
}

/// Lays out the stack that ends at `top`, using at most `room` bytes below it.
/// Strings are bytes, as Linux takes them (an exec'd program's need not be UTF-8).
pub fn build<S: AsRef<[u8]>>(
    top: u64,
    room: u64,
    argv: &[S],
    envp: &[S],
    execfn: &[u8],
    aux: &Auxv,
) -> Result<InitialStack, LinuxError> {
    for s in argv.iter().chain(envp).map(AsRef::as_ref).chain([execfn]) {
        if s.contains(&0) {
            return Err(LinuxError::Args(
                "an argument or variable contains a NUL byte".into(),
            ));
        }
    }
    // Strings and random bytes at the top, in a block we fill from its start.
    let mut strings: Vec<u8> = Vec::new();
    let mut put = |s: &[u8]| -> u64 {
        let at = strings.len() as u64;
        strings.extend_from_slice(s);
        at
    };
    let random_off = put(&aux.random);
    let platform_off = put(PLATFORM.as_bytes());
    put(b"\0");
    let execfn_off = put(execfn);
    put(b"\0");
    let mut argv_offs = Vec::with_capacity(argv.len());
    for a in argv {
        argv_offs.push(put(a.as_ref()));
        put(b"\0");
    }
    let mut envp_offs = Vec::with_capacity(envp.len());
    for e in envp {
        envp_offs.push(put(e.as_ref()));
        put(b"\0");
    }
    let strings_len = (strings.len() as u64).next_multiple_of(16);
    let strings_at = top
        .checked_sub(strings_len)
        .ok_or_else(|| LinuxError::Args("stack underflow".into()))?;

    let auxv: [(u64, u64); 20] = [
        (AT_IGNORE, VDSO_SLOT),
        (AT_PHDR, aux.phdr),
        (AT_PHENT, aux.phent),
        (AT_PHNUM, aux.phnum),
        (AT_PAGESZ, PAGE_SIZE),
        (AT_BASE, aux.base),
        (AT_FLAGS, 0),
        (AT_ENTRY, aux.entry),
        (AT_UID, aux.uid.into()),
        (AT_EUID, aux.uid.into()),
        (AT_GID, aux.gid.into()),
        (AT_EGID, aux.gid.into()),
        (AT_PLATFORM, strings_at + platform_off),
        (AT_HWCAP, aux.hwcap),
        (AT_HWCAP2, 0),
        (AT_CLKTCK, CLKTCK),
        (AT_SECURE, 0),
        (AT_RANDOM, strings_at + random_off),
        (AT_EXECFN, strings_at + execfn_off),
        (AT_NULL, 0),
    ];
    let words = 1 + argv.len() + 1 + envp.len() + 1 + 2 * auxv.len();
    let table_len = (8 * words as u64).next_multiple_of(16);
    let total = table_len + strings_len;
    if total > room {
        return Err(LinuxError::Args(format!(
            "arguments and environment need {total} bytes of stack; at most {room} fit"
        )));
    }
    let sp = strings_at - table_len;
    let mut table: Vec<u64> = Vec::with_capacity(words);
    table.push(argv.len() as u64);
    table.extend(argv_offs.iter().map(|o| strings_at + o));
    table.push(0);
    table.extend(envp_offs.iter().map(|o| strings_at + o));
    table.push(0);
    for (k, v) in auxv {
        table.push(k);
        table.push(v);
    }
    let mut bytes: Vec<u8> = table.iter().flat_map(|w| w.to_le_bytes()).collect();
    bytes.resize(table_len as usize, 0);
    bytes.extend_from_slice(&strings);
    bytes.resize(total as usize, 0);
    Ok(InitialStack { sp, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(st: &InitialStack, addr: u64) -> u64 {
        let at = (addr - st.sp) as usize;
        u64::from_le_bytes(st.bytes[at..at + 8].try_into().unwrap())
    }

    fn cstr(st: &InitialStack, addr: u64) -> String {
        let at = (addr - st.sp) as usize;
        let end = st.bytes[at..].iter().position(|&b| b == 0).unwrap();
        String::from_utf8(st.bytes[at..at + end].to_vec()).unwrap()
    }

    fn aux() -> Auxv {
        Auxv {
            phdr: 0x400040,
            phent: 56,
            phnum: 3,
            entry: 0x401000,
            base: 0,
            uid: 1000,
            gid: 1000,
            hwcap: 0x178bfbff,
            random: [7; 16],
        }
    }

    #[test]
    fn walks_like_the_kernel_lays_it_out() {
        let top = 0x800_0000;
        let argv = vec!["prog".to_string(), "a b".into()];
        let envp = vec!["K=V".to_string()];
        let st = build(top, 1 << 20, &argv, &envp, b"/bin/prog", &aux()).unwrap();
        assert_eq!(st.sp % 16, 0);
        assert_eq!(st.sp + st.bytes.len() as u64, top);
        assert_eq!(word(&st, st.sp), 2);
        assert_eq!(cstr(&st, word(&st, st.sp + 8)), "prog");
        assert_eq!(cstr(&st, word(&st, st.sp + 16)), "a b");
        assert_eq!(word(&st, st.sp + 24), 0);
        assert_eq!(cstr(&st, word(&st, st.sp + 32)), "K=V");
        assert_eq!(word(&st, st.sp + 40), 0);
        let mut at = st.sp + 48;
        let mut seen = std::collections::HashMap::new();
        loop {
            let (k, v) = (word(&st, at), word(&st, at + 8));
            at += 16;
            if k == AT_NULL {
                break;
            }
            seen.insert(k, v);
        }
        assert_eq!(seen[&AT_ENTRY], 0x401000);
        assert_eq!(seen[&AT_PAGESZ], 4096);
        assert_eq!(seen[&AT_SECURE], 0);
        assert_eq!(cstr(&st, seen[&AT_EXECFN]), "/bin/prog");
        assert_eq!(cstr(&st, seen[&AT_PLATFORM]), "x86_64");
        let r = (seen[&AT_RANDOM] - st.sp) as usize;
        assert_eq!(&st.bytes[r..r + 16], &[7; 16]);
    }

    #[test]
    fn refuses_too_much_or_nul() {
        let big = vec!["x".repeat(5000)];
        assert!(build(0x10000, 4096, &big, &[], b"p", &aux()).is_err());
        assert!(build(0x10000, 4096, &["a\0b".to_string()], &[], b"p", &aux()).is_err());
    }
}
