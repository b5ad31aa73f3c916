//! The X server's view of the app's windows, and closing one the way a window manager does
//! (a `WM_DELETE_WINDOW` client message: what the title bar's close button sends). Under Xvfb
//! no window manager runs, so the test sends it itself. libX11 is loaded at run time (x11-dl,
//! already in the tree through tao).

use std::ffi::{CStr, c_char, c_int, c_long, c_uchar, c_uint, c_ulong};
use std::ptr::null_mut;

use x11_dl::xlib;

/// A connection to `$DISPLAY`.
pub struct X {
    lib: xlib::Xlib,
    display: *mut xlib::Display,
}

impl X {
    pub fn open() -> Self {
        let lib = xlib::Xlib::open().expect("libX11");
        let display = unsafe { (lib.XOpenDisplay)(std::ptr::null()) };
        assert!(!display.is_null(), "cannot open $DISPLAY");
        Self { lib, display }
    }

    fn atom(&self, name: &CStr) -> c_ulong {
        unsafe { (self.lib.XInternAtom)(self.display, name.as_ptr(), xlib::False) }
    }

    /// Every window (depth-first from the root) whose `_NET_WM_PID` is `pid`, with its name.
    pub fn windows_of(&self, pid: u32) -> Vec<(c_ulong, String)> {
        let net_wm_pid = self.atom(c"_NET_WM_PID");
        let mut out = Vec::new();
        let mut stack = vec![unsafe { (self.lib.XDefaultRootWindow)(self.display) }];
        while let Some(w) = stack.pop() {
            if self.cardinal(w, net_wm_pid) == Some(pid as c_ulong) {
                out.push((w, self.name(w)));
            }
            stack.extend(self.children(w));
        }
        out
    }

    fn children(&self, w: c_ulong) -> Vec<c_ulong> {
        let (mut root, mut parent, mut kids, mut n): (c_ulong, c_ulong, *mut c_ulong, c_uint) =
            (0, 0, null_mut(), 0);
        let ok = unsafe {
            (self.lib.XQueryTree)(self.display, w, &mut root, &mut parent, &mut kids, &mut n)
        };
        if ok == 0 || kids.is_null() {
            return Vec::new();
        }
        let v = unsafe { std::slice::from_raw_parts(kids, n as usize).to_vec() };
        unsafe { (self.lib.XFree)(kids.cast()) };
        v
    }

    fn cardinal(&self, w: c_ulong, prop: c_ulong) -> Option<c_ulong> {
        let (mut kind, mut format, mut n, mut after): (c_ulong, c_int, c_ulong, c_ulong) =
            (0, 0, 0, 0);
        let mut data: *mut c_uchar = null_mut();
        let status = unsafe {
            (self.lib.XGetWindowProperty)(
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
            )
        };
        if status != 0 || data.is_null() {
            return None;
        }
        // Format-32 properties come back as an array of C longs.
        let v = (format == 32 && n == 1).then(|| unsafe { *(data as *const c_ulong) });
        unsafe { (self.lib.XFree)(data.cast()) };
        v
    }

    fn name(&self, w: c_ulong) -> String {
        let mut name: *mut c_char = null_mut();
        unsafe { (self.lib.XFetchName)(self.display, w, &mut name) };
        if name.is_null() {
            return String::new();
        }
        let s = unsafe { CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned();
        unsafe { (self.lib.XFree)(name.cast()) };
        s
    }

    /// Asks the window to close, as a window manager's close button does.
    pub fn close(&self, w: c_ulong) {
        let mut ev = xlib::XClientMessageEvent {
            type_: xlib::ClientMessage,
            serial: 0,
            send_event: xlib::True,
            display: self.display,
            window: w,
            message_type: self.atom(c"WM_PROTOCOLS"),
            format: 32,
            data: xlib::ClientMessageData::new(),
        };
        ev.data
            .set_long(0, self.atom(c"WM_DELETE_WINDOW") as c_long);
        ev.data.set_long(1, xlib::CurrentTime as c_long);
        let mut ev = xlib::XEvent::from(ev);
        unsafe {
            (self.lib.XSendEvent)(self.display, w, xlib::False, xlib::NoEventMask, &mut ev);
            (self.lib.XFlush)(self.display);
        }
    }
}

impl Drop for X {
    fn drop(&mut self) {
        unsafe { (self.lib.XCloseDisplay)(self.display) };
    }
}
