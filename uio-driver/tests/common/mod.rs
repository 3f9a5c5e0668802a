//! Test support: a UIO emulation (a sysfs-shaped tree, regular files standing in for the
//! `/dev/uioN` maps, pseudo-terminals standing in for IRQ devices) and the virtualisers' view of
//! it.
#![allow(dead_code)] // each test binary uses a different part of this module
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use sddf::shm::Region;

pub const PAGE: u64 = 4096;

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "uio-driver-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The host end of an emulated UIO IRQ device: a pseudo-terminal in raw mode whose slave is what
/// the driver opens as `/dev/uioN`. Writing 4 bytes fires the "interrupt"; the driver's re-arm
/// (`write(fd, 1u32)`) arrives here.
pub struct IrqPty {
    pub master: File,
    _slave: File,
    pub slave_path: PathBuf,
}

impl IrqPty {
    pub fn new() -> IrqPty {
        let mut m: libc::c_int = -1;
        let mut s: libc::c_int = -1;
        // SAFETY: openpty writes two descriptors into `m` and `s`; no name/termios/winsize given.
        let r = unsafe {
            libc::openpty(
                &mut m,
                &mut s,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: termios is plain data; tcgetattr fills it from a valid tty descriptor.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `s` is a valid tty descriptor and `t` a valid termios.
        unsafe {
            assert_eq!(libc::tcgetattr(s, &mut t), 0);
            libc::cfmakeraw(&mut t);
            assert_eq!(libc::tcsetattr(s, libc::TCSANOW, &t), 0);
        }
        let slave_path = fs::read_link(format!("/proc/self/fd/{s}")).unwrap();
        // SAFETY: both descriptors are fresh and owned by nothing else.
        let (master, slave) = unsafe {
            (
                File::from(OwnedFd::from_raw_fd(m)),
                File::from(OwnedFd::from_raw_fd(s)),
            )
        };
        IrqPty {
            master,
            _slave: slave,
            slave_path,
        }
    }

    /// Fires the interrupt (an event count, as UIO's read returns).
    pub fn fire(&mut self) {
        self.master.write_all(&1u32.to_ne_bytes()).unwrap();
    }

    /// Consumes the re-arms written so far (a pty buffer, unlike UIO, fills up) and counts them.
    pub fn drain_rearms(&mut self) -> usize {
        let mut n = 0;
        while self.read_rearm(0).is_some() {
            n += 1;
        }
        n
    }

    /// Waits (up to `ms`) for 4 bytes written by the driver: a re-arm.
    pub fn read_rearm(&mut self, ms: i32) -> Option<u32> {
        let mut p = libc::pollfd {
            fd: self.master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut p, 1, ms) } != 1 {
            return None;
        }
        let mut b = [0u8; 4];
        self.master.read_exact(&mut b).ok()?;
        Some(u32::from_ne_bytes(b))
    }
}

/// An emulated set of UIO devices.
pub struct UioTree {
    pub dir: TempDir,
    pub sysfs: PathBuf,
    pub dev: PathBuf,
    next: u32,
    pub irqs: Vec<(String, IrqPty)>,
}

impl UioTree {
    pub fn new() -> UioTree {
        let dir = TempDir::new("uio");
        let sysfs = dir.0.join("sys");
        let dev = dir.0.join("dev");
        fs::create_dir_all(sysfs.join("class/uio")).unwrap();
        fs::create_dir_all(&dev).unwrap();
        UioTree {
            dir,
            sysfs,
            dev,
            next: 0,
            irqs: Vec::new(),
        }
    }

    fn device(&mut self, name: &str) -> (u32, PathBuf) {
        let n = self.next;
        self.next += 1;
        let d = self.sysfs.join(format!("class/uio/uio{n}"));
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("name"), format!("{name}\n")).unwrap();
        (n, d)
    }

    /// A device with map0 of `size` bytes (page-rounded, including `offset`, as
    /// uio_pdrv_genirq reports it) backed by a zeroed file. Returns the file path.
    pub fn add_map(&mut self, name: &str, size: u64, offset: u64) -> PathBuf {
        let (n, d) = self.device(name);
        let m = d.join("maps/map0");
        fs::create_dir_all(&m).unwrap();
        fs::write(m.join("name"), format!("{name}\n")).unwrap();
        fs::write(
            m.join("addr"),
            format!("0x{:016x}\n", 0x4000_0000u64 + u64::from(n) * 0x10_0000),
        )
        .unwrap();
        fs::write(m.join("size"), format!("0x{size:016x}\n")).unwrap();
        fs::write(m.join("offset"), format!("0x{offset:x}\n")).unwrap();
        let f = self.dev.join(format!("uio{n}"));
        File::create(&f)
            .unwrap()
            .set_len(size.next_multiple_of(PAGE))
            .unwrap();
        f
    }

    /// An IRQ-only device (no maps).
    pub fn add_irq(&mut self, name: &str) {
        let (n, _) = self.device(name);
        let pty = IrqPty::new();
        std::os::unix::fs::symlink(&pty.slave_path, self.dev.join(format!("uio{n}"))).unwrap();
        self.irqs.push((name.to_string(), pty));
    }

    pub fn irq(&mut self, name: &str) -> &mut IrqPty {
        &mut self.irqs.iter_mut().find(|(n, _)| n == name).unwrap().1
    }

    /// The devices a working driver needs: queues of `cap` entries, `rx_bufs` RX buffers,
    /// `tx_regions` TX regions of `tx_bufs` buffers. Returns the file paths by name.
    pub fn standard(
        cap: u64,
        rx_bufs: u64,
        tx_regions: usize,
        tx_bufs: u64,
    ) -> (UioTree, Vec<(String, PathBuf)>) {
        let mut t = UioTree::new();
        let q = (8 + 16 * cap).next_multiple_of(PAGE);
        let mut files = Vec::new();
        for (name, size) in [
            ("rx_free", q),
            ("rx_active", q),
            ("rx_data", rx_bufs * 2048),
            ("tx_free", q),
            ("tx_active", q),
            ("rx_fault", PAGE),
            ("tx_fault", PAGE),
        ] {
            files.push((name.to_string(), t.add_map(name, size, 0)));
        }
        for i in 0..tx_regions {
            let name = format!("tx_data{i}");
            files.push((name.clone(), t.add_map(&name, tx_bufs * 2048, 0)));
        }
        t.add_irq("rx_irq");
        t.add_irq("tx_irq");
        (t, files)
    }
}

/// A file mapped shared, viewed as a Region (the virtualisers' side of a UIO map).
pub struct FileMap {
    ptr: NonNull<u8>,
    len: usize,
    _file: File,
}

// SAFETY: the mapping is shared memory only accessed through Region (volatile, bounds-checked).
unsafe impl Send for FileMap {}

impl FileMap {
    pub fn open(path: &Path) -> FileMap {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        let len = file.metadata().unwrap().len() as usize;
        // SAFETY: a fresh shared mapping of a regular file, checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        FileMap {
            ptr: NonNull::new(p.cast()).unwrap(),
            len,
            _file: file,
        }
    }

    pub fn region(&self) -> Region<'_> {
        // SAFETY: the mapping lives as long as `self`; nothing makes plain references into it.
        unsafe { Region::new(self.ptr, self.len) }
    }
}

impl Drop for FileMap {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in `open`; Regions borrow `self`, so none outlives it.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Two network namespaces joined by a veth pair, removed on drop.
pub struct VethPair {
    pub ns_driver: String,
    pub ns_peer: String,
    pub if_driver: String,
    pub if_peer: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl VethPair {
    /// Creates the namespaces and the pair, or says why it could not.
    pub fn new(tag: &str) -> Result<VethPair, String> {
        let id = std::process::id();
        let v = VethPair {
            ns_driver: format!("uiod-{tag}-{id}-d"),
            ns_peer: format!("uiod-{tag}-{id}-p"),
            if_driver: "vdrv".to_string(),
            if_peer: "vpeer".to_string(),
        };
        ip(&["netns", "add", &v.ns_driver])?;
        ip(&["netns", "add", &v.ns_peer])?;
        ip(&[
            "link",
            "add",
            &v.if_driver,
            "netns",
            &v.ns_driver,
            "type",
            "veth",
            "peer",
            "name",
            &v.if_peer,
            "netns",
            &v.ns_peer,
        ])?;
        ip(&["-n", &v.ns_driver, "link", "set", &v.if_driver, "up"])?;
        ip(&["-n", &v.ns_peer, "link", "set", &v.if_peer, "up"])?;
        Ok(v)
    }

    /// Runs `f` on a thread that has entered namespace `ns` (sockets it makes stay there).
    pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let ns = ns.to_string();
        std::thread::spawn(move || {
            enter_ns(&ns);
            f()
        })
        .join()
        .unwrap()
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.ns_driver]);
        let _ = ip(&["netns", "del", &self.ns_peer]);
    }
}

/// A raw packet socket on one interface (the far end of the veth), receiving one EtherType.
pub struct RawSocket {
    fd: OwnedFd,
    ifindex: i32,
}

impl RawSocket {
    /// Opens it; call inside the interface's namespace ([`VethPair::in_ns`]).
    pub fn open(iface: &str, ethertype: u16) -> RawSocket {
        let name = std::ffi::CString::new(iface).unwrap();
        // SAFETY: valid C string.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) } as i32;
        assert!(ifindex > 0, "no interface {iface}");
        // SAFETY: plain system call, result checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(ethertype.to_be()),
            )
        };
        assert!(fd >= 0);
        // SAFETY: fresh descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // A large receive buffer: the tests count every frame, and the kernel drops silently.
        let rcvbuf: libc::c_int = 16 << 20;
        // SAFETY: `rcvbuf` is a valid c_int for the duration of the call.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&rcvbuf as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
        let addr = Self::addr(ifindex, ethertype);
        // SAFETY: `addr` is a valid sockaddr_ll.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(r, 0);
        RawSocket { fd, ifindex }
    }

    fn addr(ifindex: i32, ethertype: u16) -> libc::sockaddr_ll {
        // SAFETY: plain data, zero is valid.
        let mut a: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        a.sll_family = libc::AF_PACKET as u16;
        a.sll_protocol = ethertype.to_be();
        a.sll_ifindex = ifindex;
        a.sll_halen = 6;
        a
    }

    pub fn send(&self, frame: &[u8]) {
        let addr = Self::addr(self.ifindex, 0);
        // SAFETY: `frame` and `addr` are valid for the call.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(
            n,
            frame.len() as isize,
            "send: {}",
            std::io::Error::last_os_error()
        );
    }

    /// The next frame within `ms`, or `None`.
    pub fn recv(&self, ms: i32) -> Option<Vec<u8>> {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut p, 1, ms) } != 1 {
            return None;
        }
        let mut b = vec![0u8; 4096];
        // SAFETY: `b` is writable for its length.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                b.as_mut_ptr().cast(),
                b.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return None;
        }
        b.truncate(n as usize);
        Some(b)
    }
}

/// EtherType of test frames (IEEE local experimental).
pub const TEST_ETHERTYPE: u16 = 0x88b5;

/// A test frame: broadcast dst, fixed src, test EtherType, payload of `len - 14` bytes
/// derived from `seq`.
pub fn test_frame(seq: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f.extend_from_slice(&TEST_ETHERTYPE.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    while f.len() < len {
        f.push((f.len() as u32 ^ seq) as u8);
    }
    f.truncate(len);
    f
}

/// Whether a frame carries the test EtherType (behind an 802.1Q tag or not).
pub fn is_test_frame(f: &[u8]) -> bool {
    (f.len() >= 14 && f[12..14] == TEST_ETHERTYPE.to_be_bytes())
        || (f.len() >= 18 && f[12..14] == [0x81, 0x00] && f[16..18] == TEST_ETHERTYPE.to_be_bytes())
}

/// `f` with an 802.1Q tag (VLAN `vid`) after its addresses. Linux strips such a tag into the
/// skb on receive, and packet sockets report it beside the frame, not in it.
pub fn vlan_tagged(f: &[u8], vid: u16) -> Vec<u8> {
    let mut t = f[..12].to_vec();
    t.extend_from_slice(&[0x81, 0x00]);
    t.extend_from_slice(&vid.to_be_bytes());
    t.extend_from_slice(&f[12..]);
    t
}

/// Moves the calling thread into network namespace `ns`.
pub fn enter_ns(ns: &str) {
    let file = File::open(format!("/var/run/netns/{ns}")).unwrap();
    // SAFETY: setns on a valid namespace descriptor affects only this thread.
    let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

/// The bytes of a `.net_driver_config` with queues of `rx` / `tx` entries (what the guest finds
/// in its device tree).
pub fn driver_config(rx: u32, tx: u32) -> Vec<u8> {
    use sddf::config::RegionResource;
    let q = [RegionResource::default(); 2];
    let cap = |n| sddf::queue::Capacity::new(n).unwrap();
    uio_driver::config::DriverConfig::standalone(cap(rx), cap(tx), q, q).to_bytes()
}

/// The lines `child` prints on its stdout (which must be piped), as they come.
pub fn stdout_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, lines) = std::sync::mpsc::channel();
    let out = child.stdout.take().expect("stdout is piped");
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    lines
}

/// Starts `cmd` with its stdout piped and waits up to 10 s for its first line, which must be
/// `first`; returns the child and the rest of its stdout lines.
pub fn spawn_until(
    cmd: &mut std::process::Command,
    first: &str,
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut child = cmd.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let lines = stdout_lines(&mut child);
    let line = lines
        .recv_timeout(std::time::Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("no first line (expected {first:?}) within 10 s"));
    assert_eq!(line, first);
    (child, lines)
}

/// virt_rx, a client and virt_tx in one, on the queue side of a driver under test: takes each
/// frame off rx_active (its buffer goes back at once), lets `answer` rewrite it, and queues the
/// answer on tx_active in a TX buffer secured before the frame is taken (so no answer is lost
/// for lack of one); then signals the driver as sDDF does.
#[allow(dead_code)] // not every test binary that includes `common` uses it
pub struct QueueEcho<'a> {
    pub virt_rx: sddf::queue::DrainSide<'a>,
    pub virt_tx: sddf::queue::FillSide<'a>,
    pub rx_data: Region<'a>,
    pub tx_data: Region<'a>,
    spare: Option<sddf::BuffDesc>,
    buf: Vec<u8>,
}

#[allow(dead_code)]
impl<'a> QueueEcho<'a> {
    pub fn new(
        virt_rx: sddf::queue::DrainSide<'a>,
        virt_tx: sddf::queue::FillSide<'a>,
        rx_data: Region<'a>,
        tx_data: Region<'a>,
    ) -> Self {
        QueueEcho {
            virt_rx,
            virt_tx,
            rx_data,
            tx_data,
            spare: None,
            buf: vec![0; sddf::NET_BUFFER_SIZE],
        }
    }

    /// One pass: every frame waiting in rx_active (while TX buffers last) goes through `answer`,
    /// which says whether to send it back. Returns how many frames were taken.
    pub fn round(
        &mut self,
        tree: &mut UioTree,
        answer: &mut dyn FnMut(&mut [u8]) -> bool,
    ) -> usize {
        let mut taken = 0;
        loop {
            if self.spare.is_none() {
                self.spare = self.virt_tx.free.dequeue().ok();
            }
            let Some(t) = self.spare else { break };
            let Ok(d) = self.virt_rx.active.dequeue() else {
                break;
            };
            taken += 1;
            let len = usize::from(d.len);
            let frame = &mut self.buf[..len];
            self.rx_data.read(d.io_or_offset as usize, frame).unwrap();
            self.virt_rx.free.enqueue(d.with_len(0)).unwrap();
            if !answer(frame) {
                continue;
            }
            self.tx_data.write(t.io_or_offset as usize, frame).unwrap();
            self.virt_tx.active.enqueue(t.with_len(len as u16)).unwrap();
            self.spare = None;
        }
        if self.virt_tx.active.take_signal_request() {
            tree.irq("tx_irq").fire();
        }
        if self.virt_rx.free.take_signal_request() {
            tree.irq("rx_irq").fire();
        }
        tree.irq("tx_irq").drain_rearms();
        tree.irq("rx_irq").drain_rearms();
        taken
    }
}
