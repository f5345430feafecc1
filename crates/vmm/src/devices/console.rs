//! The serial console: a vm-superio 16550 UART on COM1 whose output goes into a
//! bounded in-memory buffer that Python reads (`Vm.console`, `console_from`).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vm_superio::{Serial, Trigger};

use crate::bus::{BusDevice, DeviceAction};

/// The last `limit` bytes the guest wrote, and how many it wrote in all.
pub struct ConsoleBuffer {
    kept: VecDeque<u8>,
    total: u64,
    limit: usize,
}

impl ConsoleBuffer {
    pub fn new(limit: usize) -> Self {
        ConsoleBuffer {
            kept: VecDeque::new(),
            total: 0,
            limit,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        self.kept.extend(bytes);
        let excess = self.kept.len().saturating_sub(self.limit);
        self.kept.drain(..excess);
    }

    /// Bytes written since absolute offset `pos` (or since the oldest byte still
    /// kept, if `pos` was dropped), and the offset to pass next time.
    pub fn since(&self, pos: u64) -> (Vec<u8>, u64) {
        let first_kept = self.total - self.kept.len() as u64;
        let skip = pos.clamp(first_kept, self.total) - first_kept;
        (
            self.kept.iter().skip(skip as usize).copied().collect(),
            self.total,
        )
    }

    /// The last `n` bytes, for error reports.
    pub fn tail(&self, n: usize) -> Vec<u8> {
        self.kept
            .iter()
            .skip(self.kept.len().saturating_sub(n))
            .copied()
            .collect()
    }
}

pub type SharedConsole = Arc<Mutex<ConsoleBuffer>>;

/// The UART's output sink.
pub struct ConsoleWriter(SharedConsole);

impl io::Write for ConsoleWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The console raises no interrupts: guests poll the line status register.
pub struct NoInterrupt;

impl Trigger for NoInterrupt {
    type E = Infallible;
    fn trigger(&self) -> Result<(), Infallible> {
        Ok(())
    }
}

pub struct SerialConsole {
    uart: Mutex<Serial<NoInterrupt, vm_superio::serial::NoEvents, ConsoleWriter>>,
}

impl SerialConsole {
    pub fn new(buffer: SharedConsole) -> Self {
        SerialConsole {
            uart: Mutex::new(Serial::new(NoInterrupt, ConsoleWriter(buffer))),
        }
    }
}

impl BusDevice for SerialConsole {
    fn read(&self, offset: u64, data: &mut [u8]) {
        let mut uart = self.uart.lock().unwrap_or_else(PoisonError::into_inner);
        for (i, b) in data.iter_mut().enumerate() {
            *b = uart.read((offset as u8).wrapping_add(i as u8));
        }
    }

    fn write(&self, offset: u64, data: &[u8]) -> DeviceAction {
        let mut uart = self.uart.lock().unwrap_or_else(PoisonError::into_inner);
        for (i, b) in data.iter().enumerate() {
            // Writing to the in-memory sink cannot fail; nothing to report.
            let _ = uart.write((offset as u8).wrapping_add(i as u8), *b);
        }
        DeviceAction::Continue
    }
}

/// The console-write register: a 64-bit write of `(len << 48) | gpa` appends
/// guest memory `[gpa, gpa + len)` to the console, one exit for a whole buffer.
/// The range is checked by vm-memory; a bad one is dropped (and counted).
pub struct ConsoleWrite {
    buffer: SharedConsole,
    memory: GuestMemoryMmap,
}

impl ConsoleWrite {
    pub fn new(buffer: SharedConsole, memory: GuestMemoryMmap) -> Self {
        ConsoleWrite { buffer, memory }
    }
}

impl BusDevice for ConsoleWrite {
    fn write(&self, _offset: u64, data: &[u8]) -> DeviceAction {
        let mut raw = [0u8; 8];
        let n = data.len().min(8);
        raw[..n].copy_from_slice(&data[..n]);
        let command = u64::from_le_bytes(raw);
        let (gpa, len) = (command & 0xffff_ffff_ffff, (command >> 48) as usize);
        let mut text = vec![0u8; len];
        match self.memory.read_slice(&mut text, GuestAddress(gpa)) {
            Ok(()) => self
                .buffer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(&text),
            Err(_) => log::debug!("console write of {len} bytes at {gpa:#x} is outside guest RAM"),
        }
        DeviceAction::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_keeps_the_tail_and_streams_from_offsets() {
        let mut b = ConsoleBuffer::new(4);
        b.push(b"abc");
        assert_eq!(b.since(0), (b"abc".to_vec(), 3));
        b.push(b"def");
        assert_eq!(b.since(0), (b"cdef".to_vec(), 6));
        assert_eq!(b.since(5), (b"f".to_vec(), 6));
        assert_eq!(b.since(99), (vec![], 6));
        assert_eq!(b.tail(2), b"ef".to_vec());
    }

    #[test]
    fn console_write_copies_a_guest_range() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
        mem.write_slice(b"line one\n", GuestAddress(0x100)).unwrap();
        let buf = Arc::new(Mutex::new(ConsoleBuffer::new(100)));
        let dev = ConsoleWrite::new(buf.clone(), mem);
        let cmd = guest_kmod_bindings::vmrpc_console_write(0x100, 9);
        dev.write(0, &cmd.to_le_bytes());
        // Outside guest RAM, or wrapping: ignored.
        dev.write(
            0,
            &guest_kmod_bindings::vmrpc_console_write(0xfff0, 0x100).to_le_bytes(),
        );
        dev.write(0, &u64::MAX.to_le_bytes());
        assert_eq!(buf.lock().unwrap().since(0).0, b"line one\n".to_vec());
    }

    #[test]
    fn uart_transmit_reaches_the_buffer() {
        let buf = Arc::new(Mutex::new(ConsoleBuffer::new(100)));
        let con = SerialConsole::new(buf.clone());
        for c in b"hi\n" {
            con.write(0, &[*c]);
        }
        // Scratch register (offset 7) stores but prints nothing.
        con.write(7, &[0x55]);
        let mut r = [0u8];
        con.read(7, &mut r);
        assert_eq!(r[0], 0x55);
        assert_eq!(buf.lock().unwrap().since(0).0, b"hi\n".to_vec());
    }
}
