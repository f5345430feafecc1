//! Guest addresses to source locations, from the image's DWARF (`addr2line`).
//!
//! Guest images are static executables linked at their load address, so a
//! guest `rip` is an address in the ELF file as it is. An image without debug
//! information (stripped, or built without `-g`) gives no location, or only
//! the function name from the symbol table.

use std::fmt;
use std::path::Path;

/// Where an address is: innermost function (inlining resolved), file and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLocation {
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
}

impl SourceLocation {
    /// `file:line`, when both are known.
    pub fn file_line(&self) -> Option<String> {
        Some(format!("{}:{}", self.file.as_ref()?, self.line?))
    }
}

impl fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.function, self.file_line()) {
            (Some(func), Some(at)) => write!(f, "{func} at {at}"),
            (Some(func), None) => write!(f, "{func}"),
            (None, Some(at)) => write!(f, "{at}"),
            (None, None) => write!(f, "an unknown place"),
        }
    }
}

/// Looks `address` up in the ELF image at `image`; `None` if the image cannot
/// be read or says nothing about the address.
pub fn locate(image: &Path, address: u64) -> Option<SourceLocation> {
    let loader = match addr2line::Loader::new(image) {
        Ok(l) => l,
        Err(e) => {
            log::debug!("cannot read {} for symbols: {e}", image.display());
            return None;
        }
    };
    // The innermost frame is the code that faulted (an inlined callee, maybe).
    let mut function = None;
    let mut file = None;
    let mut line = None;
    if let Ok(mut frames) = loader.find_frames(address) {
        if let Ok(Some(frame)) = frames.next() {
            function = frame
                .function
                .and_then(|f| f.demangle().ok().map(|n| n.into_owned()));
            if let Some(loc) = frame.location {
                file = loc.file.map(str::to_owned);
                line = loc.line;
            }
        }
    }
    if function.is_none() {
        function = loader.find_symbol(address).map(str::to_owned);
    }
    if function.is_none() && file.is_none() {
        return None;
    }
    Some(SourceLocation {
        function,
        file,
        line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_uses_what_is_known() {
        let mut loc = SourceLocation {
            function: Some("main".into()),
            file: Some("/src/app.c".into()),
            line: Some(7),
        };
        assert_eq!(loc.to_string(), "main at /src/app.c:7");
        loc.line = None;
        assert_eq!(loc.to_string(), "main");
        assert_eq!(loc.file_line(), None);
    }

    #[test]
    fn unreadable_images_give_nothing() {
        assert_eq!(locate(Path::new("/nonexistent/guest.elf"), 0x10_0000), None);
        assert_eq!(locate(Path::new("/dev/null"), 0x10_0000), None);
    }
}
