//! The app's window as the X server sees it: finding the top-level window of a process
//! (`_NET_WM_PID`), whether it is mapped, and closing it the way a window manager does when the
//! user clicks the close button: a `WM_PROTOCOLS` client message carrying `WM_DELETE_WINDOW`
//! (ICCCM 4.2.8.1). Xvfb runs no window manager, so the bench sends it itself. libX11 is
//! loaded at run time (x11-dl); it is there wherever GTK is.

use std::ffi::CString;
use std::os::raw::{c_int, c_long, c_uchar, c_uint, c_ulong};
use std::ptr;

use x11_dl::xlib::{self, Atom, Display, Window, Xlib};

use crate::BoxError;

pub struct X {
    xlib: Xlib,
    dpy: *mut Display,
    root: Window,
    net_wm_pid: Atom,
    wm_protocols: Atom,
    wm_delete: Atom,
}

/// A window that is gone by the time it is asked about raises BadWindow; the default handler
/// would end the bench. Every query here treats an error as "no answer".
unsafe extern "C" fn ignore_errors(_: *mut Display, _: *mut xlib::XErrorEvent) -> c_int {
    0
}

/// One top-level window of a process.
#[derive(Clone, Copy, Debug)]
pub struct TopLevel {
    pub id: Window,
    pub viewable: bool,
    /// It takes `WM_DELETE_WINDOW` (a GTK toplevel does).
    pub closable: bool,
}

impl X {
    /// Connects to `$DISPLAY`.
    pub fn open() -> Result<Self, BoxError> {
        let xlib = Xlib::open().map_err(|e| format!("cannot load libX11: {e}"))?;
        // SAFETY: plain Xlib calls on a display this struct owns until Drop; the atom names
        // are NUL-terminated C strings that outlive the calls.
        unsafe {
            (xlib.XSetErrorHandler)(Some(ignore_errors));
            let dpy = (xlib.XOpenDisplay)(ptr::null());
            if dpy.is_null() {
                return Err("cannot open the X display ($DISPLAY); run under `xvfb-run -a`".into());
            }
            let atom = |name: &str| {
                let c = CString::new(name).expect("no NUL in atom names");
                (xlib.XInternAtom)(dpy, c.as_ptr(), xlib::False)
            };
            let (net_wm_pid, wm_protocols, wm_delete) = (
                atom("_NET_WM_PID"),
                atom("WM_PROTOCOLS"),
                atom("WM_DELETE_WINDOW"),
            );
            let root = (xlib.XDefaultRootWindow)(dpy);
            Ok(Self {
                xlib,
                dpy,
                root,
                net_wm_pid,
                wm_protocols,
                wm_delete,
            })
        }
    }

    fn children(&self, w: Window) -> Vec<Window> {
        let (mut root, mut parent) = (0, 0);
        let mut kids: *mut Window = ptr::null_mut();
        let mut n: c_uint = 0;
        // SAFETY: XQueryTree fills the out-pointers; the array it returns is copied, then
        // freed with XFree.
        unsafe {
            if (self.xlib.XQueryTree)(self.dpy, w, &mut root, &mut parent, &mut kids, &mut n) == 0
                || kids.is_null()
            {
                return Vec::new();
            }
            let out = std::slice::from_raw_parts(kids, n as usize).to_vec();
            (self.xlib.XFree)(kids.cast());
            out
        }
    }

    fn pid(&self, w: Window) -> Option<u32> {
        let mut kind: Atom = 0;
        let mut format: c_int = 0;
        let (mut items, mut after): (c_ulong, c_ulong) = (0, 0);
        let mut data: *mut c_uchar = ptr::null_mut();
        // SAFETY: XGetWindowProperty fills the out-pointers; a 32-bit property comes back as
        // an array of C longs, read once and freed with XFree.
        unsafe {
            let rc = (self.xlib.XGetWindowProperty)(
                self.dpy,
                w,
                self.net_wm_pid,
                0,
                1,
                xlib::False,
                xlib::XA_CARDINAL,
                &mut kind,
                &mut format,
                &mut items,
                &mut after,
                &mut data,
            );
            if data.is_null() {
                return None;
            }
            let pid =
                (rc == 0 && format == 32 && items == 1).then(|| *(data as *const c_long) as u32);
            (self.xlib.XFree)(data.cast());
            pid
        }
    }

    fn closable(&self, w: Window) -> bool {
        let mut atoms: *mut Atom = ptr::null_mut();
        let mut n: c_int = 0;
        // SAFETY: XGetWMProtocols returns an array freed with XFree.
        unsafe {
            if (self.xlib.XGetWMProtocols)(self.dpy, w, &mut atoms, &mut n) == 0 || atoms.is_null()
            {
                return false;
            }
            let yes = std::slice::from_raw_parts(atoms, n as usize).contains(&self.wm_delete);
            (self.xlib.XFree)(atoms.cast());
            yes
        }
    }

    fn viewable(&self, w: Window) -> bool {
        // SAFETY: XGetWindowAttributes fills a plain-data struct.
        unsafe {
            let mut a: xlib::XWindowAttributes = std::mem::zeroed();
            (self.xlib.XGetWindowAttributes)(self.dpy, w, &mut a) != 0
                && a.map_state == xlib::IsViewable
        }
    }

    /// The top-level windows (children of the root: no window manager reparents them) that
    /// belong to `pid`.
    pub fn windows_of(&self, pid: u32) -> Vec<TopLevel> {
        let out = self
            .children(self.root)
            .into_iter()
            .filter(|&w| self.pid(w) == Some(pid))
            .map(|id| TopLevel {
                id,
                viewable: self.viewable(id),
                closable: self.closable(id),
            })
            .collect();
        // SAFETY: flushes the requests above and collects their errors (ignored).
        unsafe {
            (self.xlib.XSync)(self.dpy, xlib::False);
        }
        out
    }

    /// Asks `w` to close: WM_PROTOCOLS / WM_DELETE_WINDOW, as a window manager sends it.
    pub fn request_close(&self, w: Window) {
        // SAFETY: builds a client message event in a zeroed XEvent union and sends it to a
        // window of this display.
        unsafe {
            let mut ev: xlib::XEvent = std::mem::zeroed();
            ev.client_message.type_ = xlib::ClientMessage;
            ev.client_message.window = w;
            ev.client_message.message_type = self.wm_protocols;
            ev.client_message.format = 32;
            ev.client_message.data.set_long(0, self.wm_delete as c_long);
            ev.client_message
                .data
                .set_long(1, xlib::CurrentTime as c_long);
            (self.xlib.XSendEvent)(self.dpy, w, xlib::False, xlib::NoEventMask, &mut ev);
            (self.xlib.XSync)(self.dpy, xlib::False);
        }
    }
}

impl Drop for X {
    fn drop(&mut self) {
        // SAFETY: the display was opened in `open` and is closed once.
        unsafe {
            (self.xlib.XCloseDisplay)(self.dpy);
        }
    }
}
