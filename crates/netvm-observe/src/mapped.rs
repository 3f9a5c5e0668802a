//! The one module of this crate that opts back into `unsafe`: shared mappings of a running
//! host-mode system's region files ([`MappedFile`]), through `nix::sys::mman`.
#![allow(unsafe_code)]

use std::io;
use std::num::NonZeroUsize;
use std::ptr::NonNull;

use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

/// A region file of a running system, mapped shared so that an observer sees what the PDs
/// write. Only ever accessed through [`sddf::shm::Region`] (volatile and atomic accesses).
pub struct MappedFile {
    ptr: NonNull<u8>,
    len: NonZeroUsize,
}

impl MappedFile {
    /// Maps the whole of `path` (which must not be empty).
    pub fn open(path: &std::path::Path) -> io::Result<MappedFile> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        let len = NonZeroUsize::new(len)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "empty file"))?;
        // SAFETY: a fresh shared mapping of an open file at a kernel-chosen address; it aliases
        // no Rust object, and the mapping outlives the fd.
        let ptr = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                &file,
                0,
            )
        }?;
        Ok(MappedFile {
            ptr: ptr.cast(),
            len,
        })
    }

    /// The mapping as shared memory.
    pub fn region(&self) -> sddf::shm::Region<'_> {
        // SAFETY: the mapping is readable and writable for `len` bytes until `self` drops, which
        // the borrow prevents; it is only accessed through `Region`. Other processes (the PDs)
        // write it concurrently, which `Region` allows.
        unsafe { sddf::shm::Region::new(self.ptr, self.len.get()) }
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `open`; no `Region` outlives `self`.
        let _ = unsafe { munmap(self.ptr.cast(), self.len.get()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mapping_shows_the_file_and_an_empty_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("netvm-mapped-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("region");
        std::fs::write(&path, [7u8; 4096]).unwrap();
        let map = MappedFile::open(&path).unwrap();
        assert_eq!(map.region().len(), 4096);
        let mut byte = [0u8; 1];
        map.region().read(4095, &mut byte).unwrap();
        assert_eq!(byte, [7]);
        let empty = dir.join("empty");
        std::fs::write(&empty, []).unwrap();
        let err = MappedFile::open(&empty).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        drop(map);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
