//! What a guest exception means, for crash reports: the vector's name, the
//! faulting address and error code of a page fault, and the source location of
//! the faulting instruction (filled in later from the image's DWARF).

use guest_kmod_bindings::CrashFrame;

use crate::symbolize::SourceLocation;

/// A CPU exception the guest runtime reported (see `devices::crash_report`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestException {
    pub vector: u64,
    pub error_code: Option<u64>,
    /// The faulting address (cr2) of a page fault.
    pub address: Option<u64>,
    pub rip: u64,
    /// Where `rip` is in the source, when the image has debug information.
    pub location: Option<SourceLocation>,
}

/// Vectors whose exception pushes an error code.
const WITH_ERROR_CODE: [u64; 10] = [8, 10, 11, 12, 13, 14, 17, 21, 29, 30];
const PAGE_FAULT: u64 = 14;

impl GuestException {
    pub fn from_frame(frame: &CrashFrame) -> Self {
        GuestException {
            vector: frame.vector,
            error_code: WITH_ERROR_CODE
                .contains(&frame.vector)
                .then_some(frame.error_code),
            address: (frame.vector == PAGE_FAULT).then_some(frame.cr2),
            rip: frame.rip,
            location: None,
        }
    }

    /// The mnemonic, e.g. "#PF"; "vector N" for vectors with none.
    pub fn name(&self) -> String {
        match mnemonic(self.vector) {
            Some((short, _)) => short.to_string(),
            None => format!("vector {}", self.vector),
        }
    }

    /// One line: exception, address and access, rip and its source location.
    pub fn describe(&self) -> String {
        let mut text = match mnemonic(self.vector) {
            Some((short, long)) => format!("{short} ({long})"),
            None => format!("exception vector {}", self.vector),
        };
        if let Some(address) = self.address {
            text += &format!(" at address {address:#x}");
            if let Some(code) = self.error_code {
                text += &format!(" ({})", page_fault_access(code));
            }
        }
        if let Some(code) = self.error_code {
            text += &format!(", error code {code:#x}");
        }
        text += &format!(", rip {:#x}", self.rip);
        if let Some(loc) = &self.location {
            text += &format!(" in {loc}");
        }
        text
    }
}

fn mnemonic(vector: u64) -> Option<(&'static str, &'static str)> {
    Some(match vector {
        0 => ("#DE", "divide error"),
        1 => ("#DB", "debug"),
        2 => ("NMI", "non-maskable interrupt"),
        3 => ("#BP", "breakpoint"),
        4 => ("#OF", "overflow"),
        5 => ("#BR", "bound range exceeded"),
        6 => ("#UD", "invalid opcode"),
        7 => ("#NM", "device not available"),
        8 => ("#DF", "double fault"),
        10 => ("#TS", "invalid TSS"),
        11 => ("#NP", "segment not present"),
        12 => ("#SS", "stack-segment fault"),
        13 => ("#GP", "general protection fault"),
        14 => ("#PF", "page fault"),
        16 => ("#MF", "x87 floating-point error"),
        17 => ("#AC", "alignment check"),
        18 => ("#MC", "machine check"),
        19 => ("#XM", "SIMD floating-point error"),
        20 => ("#VE", "virtualization exception"),
        21 => ("#CP", "control protection"),
        _ => return None,
    })
}

/// The page-fault error code in words: "user read of a protected page".
fn page_fault_access(code: u64) -> String {
    let who = if code & 4 != 0 { "user" } else { "kernel" };
    let what = if code & 16 != 0 {
        "instruction fetch"
    } else if code & 2 != 0 {
        "write"
    } else {
        "read"
    };
    let page = if code & 1 != 0 {
        "a protected page"
    } else {
        "an unmapped page"
    };
    format!("{who} {what} of {page}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_fault_names_address_access_and_location() {
        let frame = CrashFrame {
            vector: 14,
            error_code: 5,
            cr2: 0,
            rip: 0x10_0040,
            ..Default::default()
        };
        let mut e = GuestException::from_frame(&frame);
        assert_eq!(e.name(), "#PF");
        assert_eq!(e.address, Some(0));
        assert_eq!(e.error_code, Some(5));
        e.location = Some(SourceLocation {
            function: Some("main".into()),
            file: Some("app.c".into()),
            line: Some(12),
        });
        assert_eq!(
            e.describe(),
            "#PF (page fault) at address 0x0 (user read of a protected page), \
             error code 0x5, rip 0x100040 in main at app.c:12"
        );
    }

    #[test]
    fn vectors_without_error_code_or_address() {
        let frame = CrashFrame {
            vector: 6,
            error_code: 99, // what the stub pushed; not architectural for #UD
            cr2: 0x1234,
            rip: 0x10_0000,
            ..Default::default()
        };
        let e = GuestException::from_frame(&frame);
        assert_eq!((e.error_code, e.address), (None, None));
        assert_eq!(e.describe(), "#UD (invalid opcode), rip 0x100000");
        let odd = GuestException::from_frame(&CrashFrame {
            vector: 200,
            ..Default::default()
        });
        assert_eq!(odd.name(), "vector 200");
    }
}
