//! The X server's view of the app's windows (by `_NET_WM_PID`), and closing one the way a
//! window manager does when the user clicks the close button: a `WM_PROTOCOLS` client message
//! carrying `WM_DELETE_WINDOW` (ICCCM 4.2.8.1). Xvfb runs no window manager, so the caller
//! sends it itself. libX11 is loaded at run time (x11-dl); it is there wherever GTK is.

use std::ffi::{CStr, c_char, c_int, c_long, c_uchar, c_uint, c_ulong};
use std::ptr::null_mut;

use x11_dl::xlib::{self, Atom, Xlib};

use crate::{Error, Result};

/// A connection to `$DISPLAY`.
pub struct X {
    lib: Xlib,
    display: *mut xlib::Display,
    net_wm_pid: Atom,
    wm_protocols: Atom,
    wm_delete: Atom,
}

/// One window of a process.
#[derive(Clone, Debug)]
pub struct Window {
    pub id: xlib::Window,
    /// `WM_NAME` (the title), "" if none.
    pub name: String,
    /// Mapped and all its ancestors mapped: on screen.
    pub viewable: bool,
    /// It takes `WM_DELETE_WINDOW` (a GTK toplevel does).
    pub closable: bool,
}

/// A window that is gone by the time it is asked about raises BadWindow, and the default
/// handler would end the process. Every query here treats an error as "no answer".
unsafe extern "C" fn ignore_errors(_: *mut xlib::Display, _: *mut xlib::XErrorEvent) -> c_int {
    0
}

impl X {
    /// Connects to `$DISPLAY`.
    pub fn open() -> Result<Self> {
        let lib = Xlib::open().map_err(|e| Error::Failed(format!("cannot load libX11: {e}")))?;
        // SAFETY: plain Xlib calls; the display is owned by the returned value until Drop.
        unsafe {
            (lib.XSetErrorHandler)(Some(ignore_errors));
            let display = (lib.XOpenDisplay)(std::ptr::null());
            if display.is_null() {
                return Err(Error::Failed(
                    "cannot open the X display ($DISPLAY); run under `xvfb-run -a`".into(),
                ));
            }
            let atom = |name: &CStr| (lib.XInternAtom)(display, name.as_ptr(), xlib::False);
            let (net_wm_pid, wm_protocols, wm_delete) = (
                atom(c"_NET_WM_PID"),
                atom(c"WM_PROTOCOLS"),
                atom(c"WM_DELETE_WINDOW"),
            );
            Ok(Self {
                lib,
                display,
                net_wm_pid,
                wm_protocols,
                wm_delete,
            })
        }
    }

    /// Every window (depth-first from the root) whose `_NET_WM_PID` is `pid`.
    pub fn windows_of(&self, pid: u32) -> Vec<Window> {
        let mut out = Vec::new();
        // SAFETY: reads the root window of an open display.
        let mut stack = vec![unsafe { (self.lib.XDefaultRootWindow)(self.display) }];
        while let Some(w) = stack.pop() {
            if self.cardinal(w, self.net_wm_pid) == Some(pid as c_ulong) {
                out.push(Window {
                    id: w,
                    name: self.name(w),
                    viewable: self.viewable(w),
                    closable: self.closable(w),
                });
            }
            stack.extend(self.children(w));
        }
        out
    }

    fn children(&self, w: c_ulong) -> Vec<c_ulong> {
        let (mut root, mut parent, mut kids, mut n): (c_ulong, c_ulong, *mut c_ulong, c_uint) =
            (0, 0, null_mut(), 0);
        // SAFETY: XQueryTree fills the out-pointers; the array it returns is copied, then
        // freed with XFree.
        unsafe {
            let ok =
                (self.lib.XQueryTree)(self.display, w, &mut root, &mut parent, &mut kids, &mut n);
            if ok == 0 || kids.is_null() {
                return Vec::new();
            }
            let v = std::slice::from_raw_parts(kids, n as usize).to_vec();
            (self.lib.XFree)(kids.cast());
            v
        }
    }

    fn cardinal(&self, w: c_ulong, prop: c_ulong) -> Option<c_ulong> {
        let (mut kind, mut format, mut n, mut after): (c_ulong, c_int, c_ulong, c_ulong) =
            (0, 0, 0, 0);
        let mut data: *mut c_uchar = null_mut();
        // SAFETY: XGetWindowProperty fills the out-pointers; a format-32 property comes back
        // as an array of C longs, read once and freed with XFree.
        unsafe {
            let status = (self.lib.XGetWindowProperty)(
                self.display,
                w,
                prop,
                0,
                1,
                xlib::False,
                xlib::AnyPropertyType as c_ulong,
                &mut kind,
                &mut format,
                &mut n,
                &mut after,
                &mut data,
            );
            if data.is_null() {
                return None;
            }
            let v = (status == 0 && format == 32 && n == 1).then(|| *(data as *const c_ulong));
            (self.lib.XFree)(data.cast());
            v
        }
    }

    fn name(&self, w: c_ulong) -> String {
        let mut name: *mut c_char = null_mut();
        // SAFETY: XFetchName returns a NUL-terminated string (or null), copied then freed.
        unsafe {
            (self.lib.XFetchName)(self.display, w, &mut name);
            if name.is_null() {
                return String::new();
            }
            let s = CStr::from_ptr(name).to_string_lossy().into_owned();
            (self.lib.XFree)(name.cast());
            s
        }
    }

    fn closable(&self, w: c_ulong) -> bool {
        let mut atoms: *mut Atom = null_mut();
        let mut n: c_int = 0;
        // SAFETY: XGetWMProtocols returns an array freed with XFree.
        unsafe {
            if (self.lib.XGetWMProtocols)(self.display, w, &mut atoms, &mut n) == 0
                || atoms.is_null()
            {
                return false;
            }
            let yes = std::slice::from_raw_parts(atoms, n as usize).contains(&self.wm_delete);
            (self.lib.XFree)(atoms.cast());
            yes
        }
    }

    fn viewable(&self, w: c_ulong) -> bool {
        // SAFETY: XGetWindowAttributes fills a plain-data struct.
        unsafe {
            let mut a: xlib::XWindowAttributes = std::mem::zeroed();
            (self.lib.XGetWindowAttributes)(self.display, w, &mut a) != 0
                && a.map_state == xlib::IsViewable
        }
    }

    /// Asks window `w` to close, as a window manager's close button does, and waits until the
    /// X server has passed the request on.
    pub fn close(&self, w: c_ulong) {
        let mut ev = xlib::XClientMessageEvent {
            type_: xlib::ClientMessage,
            serial: 0,
            send_event: xlib::True,
            display: self.display,
            window: w,
            message_type: self.wm_protocols,
            format: 32,
            data: xlib::ClientMessageData::new(),
        };
        ev.data.set_long(0, self.wm_delete as c_long);
        ev.data.set_long(1, xlib::CurrentTime as c_long);
        let mut ev = xlib::XEvent::from(ev);
        // SAFETY: sends a fully initialised client message to a window of this display.
        unsafe {
            (self.lib.XSendEvent)(self.display, w, xlib::False, xlib::NoEventMask, &mut ev);
            (self.lib.XSync)(self.display, xlib::False);
        }
    }
}

impl Drop for X {
    fn drop(&mut self) {
        // SAFETY: the display was opened in `open` and is closed once.
        unsafe { (self.lib.XCloseDisplay)(self.display) };
    }
}
