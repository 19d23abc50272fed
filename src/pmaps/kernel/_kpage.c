/* pmaps.kernel._kpage: the compiled core of kpage.py's per-batch work (optional).
 *
 * Five functions, each the C twin of a pure one in kpage.py / procfs.py / pagemap.py / maps.py, over
 * caller-made buffers (the buffer protocol; no numpy C API), each running with the GIL released:
 *
 *   plan(pfns, gap, index) -> (seg_start, seg_len)
 *       kpage.plan_lookup: the same runs, the same merge, the same whole-span rule, the same
 *       positions, so the two paths read the same segments and make the same folio blocks.
 *   pread_spans(fd, buf, off, pos, size) -> None
 *       procfs.pread_runs: buf[pos:pos+size] from fd at off for each span (bytes); a short read
 *       is continued, EOF (past the end of RAM: fs/proc/page.c stops at max_pfn) zeroes the rest,
 *       EINTR runs the signal handlers and goes on (as os.preadv), any other error raises OSError
 *       (errno set) after the spans before it.
 *   read_matching(fd, starts, ends, gap, pfns) -> (entries, index) | None
 *       pagemap.read_matching: the present pagemap entries of the page runs [starts[i], ends[i])
 *       whose PFN is in the sorted array pfns, and each one's index in it (top's observer
 *       correction: a few thousand pages per process, a few hundred processes). None when a read
 *       comes back empty (the mm is gone: fs/proc/task_mmu.c pagemap_read).
 *
 *   fill(fd, buf, at, room) -> end
 *       procfs.read_chunks: read(2) into buf from at until EOF or less than room bytes are left
 *       (a seq_file returns a page a read: hundreds of reads in one call, without the GIL).
 *
 *   maps_columns(data) -> (cols, pos) | None
 *       maps._fast_table: the start, end, offset and inode columns of a maps text and each line's
 *       eight positions, in one pass; None exactly where _fast_table returns None (a line not of
 *       the usual shape: the slow path then decides).
 *
 * Arrays are plain buffers of native 64-bit integers (numpy int64/uint64), read and written with
 * memcpy: no alignment is assumed. Every length and bound is checked before the GIL is released;
 * a bad argument raises ValueError, never touches memory outside the buffers. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PFN_LIMIT ((uint64_t)1 << 55) /* pagemap's PFN field is bits 0-54 (pagemap.rst) */
#define GAP_LIMIT ((long long)1 << 31)

static inline uint64_t ld(const char *p, Py_ssize_t i)
{
    uint64_t v;
    memcpy(&v, p + 8 * i, 8);
    return v;
}

static inline void st(char *p, Py_ssize_t i, int64_t v)
{
    memcpy(p + 8 * i, &v, 8);
}

/* A buffer of whole 64-bit words; writable when asked. 0 on success, -1 with an exception set. */
static int get_words(PyObject *obj, Py_buffer *view, int writable, const char *name)
{
    if (PyObject_GetBuffer(obj, view, writable ? PyBUF_WRITABLE : PyBUF_SIMPLE) < 0)
        return -1;
    if (view->len % 8) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes is not a whole number of 64-bit words", name, view->len);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* ---- plan --------------------------------------------------------------------------------- */

/* OSError from an errno saved while the GIL was released (errno itself may have changed since). */
static void os_error(int err)
{
    errno = err;
    PyErr_SetFromErrno(PyExc_OSError);
}

typedef struct {
    int64_t start; /* lowest PFN of the run */
    int64_t end;   /* highest + 1 */
    Py_ssize_t first, len; /* its pages: [first, first + len) in page order */
} run_t;

/* A stable sort of runs by start (numpy's argsort(kind="stable")): bottom-up merges between a and
 * the scratch b, both n long; returns the one that holds the result. Runs come in page order, so
 * equal starts stay in it. */
static run_t *sort_runs(run_t *a, run_t *b, Py_ssize_t n)
{
    for (Py_ssize_t w = 1; w < n; w *= 2) {
        for (Py_ssize_t lo = 0; lo < n; lo += 2 * w) {
            Py_ssize_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            Py_ssize_t i = lo, j = mid, k = lo;
            if (mid == hi || a[mid - 1].start <= a[mid].start) { /* already in order */
                memcpy(b + lo, a + lo, sizeof(run_t) * (size_t)(hi - lo));
                continue;
            }
            while (i < mid && j < hi)
                b[k++] = a[j].start < a[i].start ? a[j++] : a[i++];
            while (i < mid)
                b[k++] = a[i++];
            while (j < hi)
                b[k++] = a[j++];
        }
        run_t *t = a;
        a = b;
        b = t;
    }
    return a;
}

/* The plan of kpage.plan_lookup: its segments into *segs (malloc'd, nseg pairs of first PFN and
 * length) and each page's position into index (n entries). Returns nseg, -1 when out of memory, -2
 * when a PFN is not below PFN_LIMIT. */
static Py_ssize_t make_plan(const char *pfns, Py_ssize_t n, int64_t gap, int64_t **segs, char *index)
{
    *segs = NULL;
    if (n == 0)
        return 0;
    Py_ssize_t nruns = 1;
    uint64_t any = ld(pfns, 0);
    for (Py_ssize_t i = 1; i < n; i++) { /* the step is not -1, 0 or +1 (unsigned: see kpage.py) */
        nruns += ld(pfns, i) - ld(pfns, i - 1) + 1 > 2;
        any |= ld(pfns, i);
    }
    if (any >= PFN_LIMIT)
        return -2; /* not PFNs: the caller says which */
    run_t *mem = malloc(sizeof(run_t) * 2 * (size_t)nruns);
    int64_t *seg = malloc(sizeof(int64_t) * 2 * (size_t)nruns);
    if (!mem || !seg) {
        free(mem);
        free(seg);
        return -1;
    }
    /* A run covers every PFN between its lowest and highest (steps of at most one). The PFNs are
     * read again: masked, and at most nruns runs, so that another thread writing to them meanwhile
     * (the GIL is released) makes a wrong plan, never a write out of bounds. */
    const uint64_t mask = PFN_LIMIT - 1;
    Py_ssize_t r = 0;
    int64_t lo = (int64_t)(ld(pfns, 0) & mask), hi = lo, prev = lo;
    mem[0].first = 0;
    for (Py_ssize_t i = 1; i < n; i++) {
        int64_t p = (int64_t)(ld(pfns, i) & mask);
        int brk = (uint64_t)p - (uint64_t)prev + 1 > 2;
        prev = p;
        if (brk && r + 1 < nruns) {
            mem[r].start = lo;
            mem[r].end = hi + 1;
            mem[r].len = i - mem[r].first;
            r++;
            mem[r].first = i;
            lo = hi = p;
        } else {
            lo = p < lo ? p : lo;
            hi = p > hi ? p : hi;
        }
    }
    mem[r].start = lo;
    mem[r].end = hi + 1;
    mem[r].len = n - mem[r].first;
    run_t *scratch = mem + nruns;
    nruns = r + 1; /* fewer only if the PFNs changed since they were counted */
    run_t *runs = sort_runs(mem, scratch, nruns);
    /* numeric.merge_intervals: a new segment where a run starts more than gap past the reach so far. */
    Py_ssize_t nseg = 0;
    int64_t reach = 0, total = 0;
    for (Py_ssize_t k = 0; k < nruns; k++) {
        if (k == 0 || runs[k].start > reach + gap) {
            if (k)
                seg[2 * nseg - 1] = reach - seg[2 * nseg - 2];
            seg[2 * nseg] = runs[k].start;
            nseg++;
            reach = runs[k].end;
        } else if (runs[k].end > reach) {
            reach = runs[k].end;
        }
    }
    seg[2 * nseg - 1] = reach - seg[2 * nseg - 2];
    for (Py_ssize_t j = 0; j < nseg; j++)
        total += seg[2 * j + 1];
    /* One whole span beats many segments when the PFNs are dense (kpage.PFNS_PER_CALL); reach is
     * the highest end of all. */
    int64_t span = reach - seg[0];
    int over = gap > 0 && nseg > (INT64_MAX - total) / gap; /* then span (< 2**55) is below it */
    if (nseg > 1 && (over || span <= total + gap * nseg)) {
        nseg = 1;
        seg[1] = span;
    }
    /* Each run lies in the segment its start is in (both sorted): its lowest PFN's position in the
     * concatenated buffer, plus each page's distance from it. */
    Py_ssize_t j = 0;
    int64_t off = 0;
    for (Py_ssize_t k = 0; k < nruns; k++) {
        while (runs[k].start >= seg[2 * j] + seg[2 * j + 1] && j + 1 < nseg) {
            off += seg[2 * j + 1];
            j++;
        }
        int64_t base = off + (runs[k].start - seg[2 * j]) - runs[k].start;
        for (Py_ssize_t i = runs[k].first, e = i + runs[k].len; i < e; i++)
            st(index, i, base + (int64_t)(ld(pfns, i) & mask));
    }
    free(mem);
    *segs = seg;
    return nseg;
}

PyDoc_STRVAR(plan_doc,
"plan(pfns, gap, index) -> (seg_start, seg_len)\n\n"
"kpage.plan_lookup: pfns is a buffer of n native u64 PFNs (each < 2**55), index a writable buffer\n"
"of n 64-bit words for each page's position; the segments come back as bytes of native int64.\n"
"Runs with the GIL released.");

static PyObject *kp_plan(PyObject *self, PyObject *args)
{
    PyObject *o_pfns, *o_ix;
    long long gap;
    if (!PyArg_ParseTuple(args, "OLO:plan", &o_pfns, &gap, &o_ix))
        return NULL;
    if (gap < 0 || gap > GAP_LIMIT)
        return PyErr_Format(PyExc_ValueError, "gap %lld is out of range", gap);
    Py_buffer bp, bi;
    if (get_words(o_pfns, &bp, 0, "pfns") < 0)
        return NULL;
    if (get_words(o_ix, &bi, 1, "index") < 0) {
        PyBuffer_Release(&bp);
        return NULL;
    }
    PyObject *ret = NULL;
    Py_ssize_t n = bp.len / 8;
    const char *pfns = bp.buf;
    if (bi.len / 8 != n) {
        PyErr_Format(PyExc_ValueError, "index: %zd words for %zd PFNs", bi.len / 8, n);
        goto done;
    }
    /* The index must not overlap the PFNs: the plan reads them to the end. */
    if (n && pfns < (char *)bi.buf + bi.len && (char *)bi.buf < pfns + bp.len) {
        PyErr_SetString(PyExc_ValueError, "pfns and index overlap");
        goto done;
    }
    int64_t *seg;
    Py_ssize_t nseg;
    Py_BEGIN_ALLOW_THREADS
    nseg = make_plan(pfns, n, (int64_t)gap, &seg, bi.buf);
    Py_END_ALLOW_THREADS
    if (nseg == -2) {
        Py_ssize_t i = 0;
        while (i < n && ld(pfns, i) < PFN_LIMIT) /* it may be gone (another thread): i < n */
            i++;
        if (i < n)
            PyErr_Format(PyExc_ValueError, "PFN %llu at %zd is out of range", (unsigned long long)ld(pfns, i), i);
        else
            PyErr_SetString(PyExc_ValueError, "a PFN is out of range");
        goto done;
    }
    if (nseg < 0) {
        PyErr_NoMemory();
        goto done;
    }
    PyObject *s = PyBytes_FromStringAndSize(NULL, nseg * 8), *l = PyBytes_FromStringAndSize(NULL, nseg * 8);
    if (s && l) {
        for (Py_ssize_t j = 0; j < nseg; j++) {
            st(PyBytes_AS_STRING(s), j, seg[2 * j]);
            st(PyBytes_AS_STRING(l), j, seg[2 * j + 1]);
        }
        ret = PyTuple_Pack(2, s, l);
    }
    Py_XDECREF(s);
    Py_XDECREF(l);
    free(seg);
done:
    PyBuffer_Release(&bp);
    PyBuffer_Release(&bi);
    return ret;
}

/* ---- pread_spans -------------------------------------------------------------------------- */

/* The spans (off, pos, size triples) from span *at, *part bytes into it: 0 when all are read, EINTR
 * when a read was interrupted (*at and *part say where to go on), else the errno of a failed read.
 * Without the GIL. */
static int read_spans(int fd, char *base, const int64_t *spans, Py_ssize_t n, Py_ssize_t *at, size_t *part)
{
    for (Py_ssize_t i = *at; i < n; i++) {
        int64_t o = spans[3 * i];
        char *dst = base + spans[3 * i + 1];
        size_t want = (size_t)spans[3 * i + 2], done = i == *at ? *part : 0;
        while (done < want) {
            ssize_t r = pread(fd, dst + done, want - done, (off_t)(o + (int64_t)done));
            if (r < 0) {
                *at = i;
                *part = done;
                return errno;
            }
            if (r == 0)
                break; /* EOF: past the last PFN */
            done += (size_t)r;
        }
        if (done < want)
            memset(dst + done, 0, want - done);
    }
    *at = n;
    return 0;
}

PyDoc_STRVAR(pread_spans_doc,
"pread_spans(fd, buf, off, pos, size) -> None\n\n"
"procfs.pread_runs: for each span i, buf[pos[i]:pos[i] + size[i]] from fd at byte offset off[i]\n"
"(off, pos, size: buffers of 64-bit words, in bytes). A short read is continued; what EOF leaves\n"
"is zeroed; EINTR runs the signal handlers, then goes on; another error raises OSError. Runs with\n"
"the GIL released.");

static PyObject *kp_pread_spans(PyObject *self, PyObject *args)
{
    int fd;
    PyObject *o_buf, *o_off, *o_pos, *o_size;
    if (!PyArg_ParseTuple(args, "iOOOO:pread_spans", &fd, &o_buf, &o_off, &o_pos, &o_size))
        return NULL;
    Py_buffer buf, b[3];
    PyObject *objs[3] = {o_off, o_pos, o_size};
    const char *names[3] = {"off", "pos", "size"};
    int got = 0, have_buf = 0;
    PyObject *ret = NULL;
    if (PyObject_GetBuffer(o_buf, &buf, PyBUF_WRITABLE) < 0)
        return NULL;
    have_buf = 1;
    for (; got < 3; got++)
        if (get_words(objs[got], &b[got], 0, names[got]) < 0)
            goto done;
    Py_ssize_t n = b[0].len / 8;
    if (b[1].len / 8 != n || b[2].len / 8 != n) {
        PyErr_SetString(PyExc_ValueError, "off, pos and size differ in length");
        goto done;
    }
    /* The spans are copied, then checked: what is read is what was checked, even if pos or size
     * share memory with buf, or another thread writes to them once the GIL is gone. */
    const char *off = b[0].buf, *pos = b[1].buf, *size = b[2].buf;
    int64_t *spans = malloc(sizeof(int64_t) * 3 * (size_t)(n ? n : 1));
    if (!spans) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t o = spans[3 * i] = (int64_t)ld(off, i);
        int64_t p = spans[3 * i + 1] = (int64_t)ld(pos, i);
        int64_t s = spans[3 * i + 2] = (int64_t)ld(size, i);
        if (o < 0 || p < 0 || s < 0 || s > buf.len || p > buf.len - s || o > INT64_MAX - s) {
            PyErr_Format(PyExc_ValueError, "span %zd (off %lld, pos %lld, size %lld) is outside a buffer of %zd bytes",
                         i, (long long)o, (long long)p, (long long)s, buf.len);
            free(spans);
            goto done;
        }
    }
    /* As os.preadv (PEP 475): EINTR runs the signal handlers (with the GIL; in the main thread
     * only, as Python does), then the reads go on unless one raised (Ctrl-C). */
    int err;
    Py_ssize_t at = 0;
    size_t part = 0;
    for (;;) {
        Py_BEGIN_ALLOW_THREADS
        err = read_spans(fd, buf.buf, spans, n, &at, &part);
        Py_END_ALLOW_THREADS
        if (err != EINTR)
            break;
        if (PyErr_CheckSignals() < 0) {
            free(spans);
            goto done;
        }
    }
    free(spans);
    if (err) {
        os_error(err);
        goto done;
    }
    ret = Py_NewRef(Py_None);
done:
    for (int k = 0; k < got; k++)
        PyBuffer_Release(&b[k]);
    if (have_buf)
        PyBuffer_Release(&buf);
    return ret;
}

/* ---- fill ----------------------------------------------------------------------------------- */

/* read(2) into base[*at:len] until EOF or less than room bytes are left: 0, or the errno of a failed
 * read (EINTR: *at says where to go on). Without the GIL. */
static int fill_reads(int fd, char *base, Py_ssize_t len, Py_ssize_t *at, Py_ssize_t room)
{
    while (len - *at >= room) {
        ssize_t r = read(fd, base + *at, (size_t)(len - *at));
        if (r < 0)
            return errno;
        if (r == 0)
            break;
        *at += r;
    }
    return 0;
}

PyDoc_STRVAR(fill_doc,
"fill(fd, buf, at, room) -> int\n\n"
"procfs.read_chunks: read(2) fd into buf from byte at on, again and again, until a read returns 0\n"
"(EOF) or less than room bytes are left; returns where the data now ends. A seq_file read (smaps,\n"
"maps) returns about a page, so one call is hundreds of reads without the GIL, where a Python loop\n"
"waits for the GIL after each one. EINTR runs the signal handlers, then goes on; another error\n"
"raises OSError.");

static PyObject *kp_fill(PyObject *self, PyObject *args)
{
    int fd;
    PyObject *o_buf;
    Py_ssize_t at, room;
    if (!PyArg_ParseTuple(args, "iOnn:fill", &fd, &o_buf, &at, &room))
        return NULL;
    Py_buffer buf;
    if (PyObject_GetBuffer(o_buf, &buf, PyBUF_WRITABLE) < 0)
        return NULL;
    PyObject *ret = NULL;
    if (at < 0 || at > buf.len || room < 1) {
        PyErr_Format(PyExc_ValueError, "at %zd, room %zd: outside a buffer of %zd bytes", at, room, buf.len);
        goto done;
    }
    int err;
    for (;;) {
        Py_BEGIN_ALLOW_THREADS
        err = fill_reads(fd, buf.buf, buf.len, &at, room);
        Py_END_ALLOW_THREADS
        if (err != EINTR)
            break;
        if (PyErr_CheckSignals() < 0)
            goto done;
    }
    if (err) {
        os_error(err);
        goto done;
    }
    ret = PyLong_FromSsize_t(at);
done:
    PyBuffer_Release(&buf);
    return ret;
}

/* ---- read_matching ------------------------------------------------------------------------ */

#define MATCH_MAX_PAGES ((int64_t)1 << 24) /* 128 MiB of entries read: the caller splits bigger reads */
#define ENTRY_PRESENT ((uint64_t)1 << 63)

/* The segments (first page, pages, position in buf in pages) into buf, from segment *at, *part
 * bytes into it: 0 when all are read, -1 at a read of 0 bytes (the mm is gone), else the errno of a
 * failed read (EINTR: *at and *part say where to go on). Without the GIL. */
static int read_segments(int fd, char *buf, const int64_t *segs, Py_ssize_t n, Py_ssize_t *at, size_t *part)
{
    for (Py_ssize_t i = *at; i < n; i++) {
        size_t want = (size_t)segs[3 * i + 1] * 8, done = i == *at ? *part : 0;
        off_t o = (off_t)(segs[3 * i] * 8);
        char *dst = buf + segs[3 * i + 2] * 8;
        while (done < want) {
            ssize_t r = pread(fd, dst + done, want - done, o + (off_t)done);
            if (r < 0) {
                *at = i;
                *part = done;
                return errno;
            }
            if (r == 0)
                return -1;
            done += (size_t)r;
        }
        *part = 0;
    }
    *at = n;
    return 0;
}

/* Append to out/idx the present entries of ents[0:n] whose PFN is in pfns (m, sorted), and each
 * one's index in pfns; returns how many. pfns is read as it is: a thread writing to it meanwhile
 * gives wrong matches, never an index outside [0, m). */
static Py_ssize_t match(const uint64_t *ents, Py_ssize_t n, const char *pfns, Py_ssize_t m, uint64_t *out,
                        int64_t *idx)
{
    Py_ssize_t k = 0;
    const uint64_t mask = PFN_LIMIT - 1;
    for (Py_ssize_t i = 0; i < n && m; i++) {
        uint64_t e = ents[i];
        if (!(e & ENTRY_PRESENT))
            continue;
        uint64_t p = e & mask;
        Py_ssize_t lo = 0, hi = m; /* the first pfns[j] >= p */
        while (lo < hi) {
            Py_ssize_t mid = lo + (hi - lo) / 2;
            if (ld(pfns, mid) < p)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < m && ld(pfns, lo) == p) {
            out[k] = e;
            idx[k++] = (int64_t)lo;
        }
    }
    return k;
}

PyDoc_STRVAR(read_matching_doc,
"read_matching(fd, starts, ends, gap, pfns) -> (entries, index) | None\n\n"
"pagemap.read_matching: the present entries of the sorted, disjoint page runs [starts[i], ends[i])\n"
"read from the pagemap fd (runs less than gap pages apart in one read, the hole's entries dropped)\n"
"whose PFN is in pfns (sorted native u64), as bytes of native u64, and the index of each one's PFN\n"
"in pfns, as bytes of native int64. None when a read returns 0 bytes (the mm is gone). At most\n"
"2**24 pages read in all. EINTR runs the signal handlers, then goes on; another error raises\n"
"OSError. Runs with the GIL released.");

static PyObject *kp_read_matching(PyObject *self, PyObject *args)
{
    int fd;
    long long gap;
    PyObject *o_s, *o_e, *o_p;
    if (!PyArg_ParseTuple(args, "iOOLO:read_matching", &fd, &o_s, &o_e, &gap, &o_p))
        return NULL;
    if (gap < 0 || gap > GAP_LIMIT)
        return PyErr_Format(PyExc_ValueError, "gap %lld is out of range", gap);
    Py_buffer b[3];
    PyObject *objs[3] = {o_s, o_e, o_p};
    const char *names[3] = {"starts", "ends", "pfns"};
    int got = 0;
    PyObject *ret = NULL;
    int64_t *runs = NULL, *segs = NULL, *idx = NULL;
    uint64_t *buf = NULL, *out = NULL;
    for (; got < 3; got++)
        if (get_words(objs[got], &b[got], 0, names[got]) < 0)
            goto done;
    Py_ssize_t n = b[0].len / 8, m = b[2].len / 8;
    if (b[1].len / 8 != n) {
        PyErr_SetString(PyExc_ValueError, "starts and ends differ in length");
        goto done;
    }
    /* The runs are copied, checked (sorted, disjoint, below 2**52 pages) and cut into segments: what
     * is read is what was checked, whatever another thread does to the buffers meanwhile. */
    runs = malloc(sizeof(int64_t) * 2 * (size_t)(n ? n : 1));
    segs = malloc(sizeof(int64_t) * 3 * (size_t)(n ? n : 1));
    if (!runs || !segs) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t nseg = 0;
    int64_t total = 0, pages = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t s = ld(b[0].buf, i), e = ld(b[1].buf, i);
        if (e < s || e > ((uint64_t)1 << 52) || (i && (int64_t)s < runs[2 * i - 1])) {
            PyErr_Format(PyExc_ValueError, "run %zd [%llu, %llu) is out of range or order", i,
                         (unsigned long long)s, (unsigned long long)e);
            goto done;
        }
        runs[2 * i] = (int64_t)s;
        runs[2 * i + 1] = (int64_t)e;
        if (e == s)
            continue;
        if (nseg && (int64_t)s - (segs[3 * nseg - 3] + segs[3 * nseg - 2]) <= gap) {
            int64_t grow = (int64_t)e - (segs[3 * nseg - 3] + segs[3 * nseg - 2]);
            segs[3 * nseg - 2] += grow;
            total += grow;
        } else {
            segs[3 * nseg] = (int64_t)s;
            segs[3 * nseg + 1] = (int64_t)(e - s);
            segs[3 * nseg + 2] = total;
            total += (int64_t)(e - s);
            nseg++;
        }
        pages += (int64_t)(e - s);
        if (total > MATCH_MAX_PAGES) {
            PyErr_SetString(PyExc_ValueError, "more than 2**24 pages to read");
            goto done;
        }
    }
    buf = malloc(8 * (size_t)(total ? total : 1));
    out = malloc(8 * (size_t)(pages ? pages : 1));
    idx = malloc(8 * (size_t)(pages ? pages : 1));
    if (!buf || !out || !idx) {
        PyErr_NoMemory();
        goto done;
    }
    int err;
    Py_ssize_t at = 0, k = 0;
    size_t part = 0;
    for (;;) {
        Py_BEGIN_ALLOW_THREADS
        err = read_segments(fd, (char *)buf, segs, nseg, &at, &part);
        if (err == 0) { /* each run's entries: its segment's position plus its distance from the segment's start */
            Py_ssize_t j = 0;
            for (Py_ssize_t i = 0; i < n; i++) {
                if (runs[2 * i + 1] == runs[2 * i])
                    continue;
                while (runs[2 * i] >= segs[3 * j] + segs[3 * j + 1])
                    j++;
                int64_t from = segs[3 * j + 2] + (runs[2 * i] - segs[3 * j]);
                k += match(buf + from, (Py_ssize_t)(runs[2 * i + 1] - runs[2 * i]), b[2].buf, m, out + k, idx + k);
            }
        }
        Py_END_ALLOW_THREADS
        if (err != EINTR)
            break;
        if (PyErr_CheckSignals() < 0)
            goto done;
    }
    if (err == -1) {
        ret = Py_NewRef(Py_None);
        goto done;
    }
    if (err) {
        os_error(err);
        goto done;
    }
    PyObject *ents = PyBytes_FromStringAndSize((char *)out, k * 8), *ix = PyBytes_FromStringAndSize((char *)idx, k * 8);
    if (ents && ix)
        ret = PyTuple_Pack(2, ents, ix);
    Py_XDECREF(ents);
    Py_XDECREF(ix);
done:
    free(runs);
    free(segs);
    free(buf);
    free(out);
    free(idx);
    for (int j = 0; j < got; j++)
        PyBuffer_Release(&b[j]);
    return ret;
}

/* ---- maps_columns ------------------------------------------------------------------------- */

/* Each byte's value as a lower-case hex digit (maps._HEX_LUT), -1 for any other byte: one load
 * per byte (two range tests cost 12% more of the pass). */
static const int8_t HEXV[256] = {
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
     0,  1,  2,  3,  4,  5,  6,  7,  8,  9, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, 10, 11, 12, 13, 14, 15, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
};

#define MAPS_HEX_MAX 16 /* digits: maps._digits' hex limit (a u64) */
#define MAPS_DEC_MAX 19 /* digits: maps._PAD - 1 (below 2**64) */

/* The hex number of t[i:j], j the first byte from i that is not a hex digit (or len): j when it
 * has 1 to MAPS_HEX_MAX digits, else -1. */
static inline Py_ssize_t hex_field(const unsigned char *t, Py_ssize_t i, Py_ssize_t len, uint64_t *out)
{
    Py_ssize_t a = i;
    uint64_t x = 0;
    int d;
    while (i < len && (d = HEXV[t[i]]) >= 0) {
        x = x << 4 | (uint64_t)d;
        i++;
    }
    *out = x;
    return i - a >= 1 && i - a <= MAPS_HEX_MAX ? i : -1;
}

/* The first blank from i (a field that is not a number: perms, dev), or -1 when the line or the
 * text ends first. */
static inline Py_ssize_t next_blank(const unsigned char *t, Py_ssize_t i, Py_ssize_t len)
{
    while (i < len && t[i] != ' ' && t[i] != '\n')
        i++;
    return i < len && t[i] == ' ' ? i : -1;
}

/* The columns (start, end, offset, inode: four columns of n u64) and positions (n rows of eight
 * int64) of the n lines of t[0:len] (the last one may lack its newline: the text's end is its end),
 * as maps._fast_table makes them: 0, or -1 where it returns None. A line must be
 * "HEX-HEX PERMS HEX DEV DEC[ +PATH]" with 1-16 lower-case hex digits, 1-19 decimal ones, perms
 * and dev not empty: the blanks s1-s4 are then the first four of the line, the inode ends at the
 * fifth (s5) or at the line's end, the path starts after the blanks from s5. At most n rows are
 * written: a text that another thread changes meanwhile gives -1 or wrong rows, never a write
 * outside them. Without the GIL. */
static int maps_pass(const unsigned char *t, Py_ssize_t len, Py_ssize_t n, char *cols, char *pos)
{
    Py_ssize_t r = 0, ls = 0;
    while (ls < len) {
        uint64_t start, end, offset, inode = 0;
        Py_ssize_t dash, s1, s2, s3, s4, s5, path, le, i;
        if (r >= n)
            return -1;
        dash = hex_field(t, ls, len, &start);
        if (dash < 0 || dash >= len || t[dash] != '-')
            return -1;
        s1 = hex_field(t, dash + 1, len, &end);
        if (s1 < 0 || s1 >= len || t[s1] != ' ')
            return -1;
        s2 = next_blank(t, s1 + 1, len);
        if (s2 < 0 || s2 - s1 < 2)
            return -1;
        s3 = hex_field(t, s2 + 1, len, &offset);
        if (s3 < 0 || s3 >= len || t[s3] != ' ')
            return -1;
        s4 = next_blank(t, s3 + 1, len);
        if (s4 < 0 || s4 - s3 < 2)
            return -1;
        for (i = s4 + 1; i < len && t[i] >= '0' && t[i] <= '9'; i++)
            inode = inode * 10 + (uint64_t)(t[i] - '0');
        if (i - s4 - 1 < 1 || i - s4 - 1 > MAPS_DEC_MAX)
            return -1;
        s5 = i;
        if (s5 < len && t[s5] == ' ') { /* a blank after the inode: the padding, then the path */
            for (path = s5; path < len && t[path] == ' '; path++)
                ;
            const unsigned char *nl = path < len ? memchr(t + path, '\n', (size_t)(len - path)) : NULL;
            le = nl ? nl - t : len;
        } else if (s5 == len || t[s5] == '\n') {
            path = le = s5;
        } else {
            return -1;
        }
        st(cols, r, (int64_t)start);
        st(cols, n + r, (int64_t)end);
        st(cols, 2 * n + r, (int64_t)offset);
        st(cols, 3 * n + r, (int64_t)inode);
        int64_t row[8] = {ls, le, s1 + 1, s2, s3 + 1, s4, path, s5};
        memcpy(pos + 64 * r, row, sizeof row);
        r++;
        ls = le + 1;
    }
    return r == n ? 0 : -1;
}

PyDoc_STRVAR(maps_columns_doc,
"maps_columns(data) -> (cols, pos) | None\n\n"
"maps._fast_table in one pass: data is the maps text (a buffer of bytes; its last line may lack its\n"
"newline), n its lines. cols: a bytearray of 4 * n native u64 (the start, end, offset and inode\n"
"columns, one after the other); pos: a bytearray of n * 8 native int64 (per line: its start, end,\n"
"perms start and end, dev start and end, path start, inode end). None where _fast_table returns\n"
"None: an empty text, a blank line, a line not \"HEX-HEX PERMS HEX DEV DEC[ +PATH]\" (1-16 lower-case\n"
"hex digits, 1-19 decimal ones). Runs with the GIL released.");

static PyObject *kp_maps_columns(PyObject *self, PyObject *arg)
{
    Py_buffer b;
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *ret = NULL, *cols = NULL, *pos = NULL;
    const unsigned char *t = b.buf;
    Py_ssize_t len = b.len, n = 0;
    if (len == 0) {
        ret = Py_NewRef(Py_None);
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    for (const unsigned char *p = t, *e = t + len; (p = memchr(p, '\n', (size_t)(e - p))) != NULL; p++)
        n++;
    n += t[len - 1] != '\n';
    Py_END_ALLOW_THREADS
    if (n > PY_SSIZE_T_MAX / 64) {
        PyErr_NoMemory();
        goto done;
    }
    cols = PyByteArray_FromStringAndSize(NULL, 32 * n);
    pos = PyByteArray_FromStringAndSize(NULL, 64 * n);
    if (!cols || !pos)
        goto done;
    int err;
    char *c = PyByteArray_AS_STRING(cols), *q = PyByteArray_AS_STRING(pos);
    Py_BEGIN_ALLOW_THREADS
    err = maps_pass(t, len, n, c, q);
    Py_END_ALLOW_THREADS
    ret = err ? Py_NewRef(Py_None) : PyTuple_Pack(2, cols, pos);
done:
    Py_XDECREF(cols);
    Py_XDECREF(pos);
    PyBuffer_Release(&b);
    return ret;
}

static PyMethodDef kp_methods[] = {
    {"fill", kp_fill, METH_VARARGS, fill_doc},
    {"maps_columns", kp_maps_columns, METH_O, maps_columns_doc},
    {"plan", kp_plan, METH_VARARGS, plan_doc},
    {"pread_spans", kp_pread_spans, METH_VARARGS, pread_spans_doc},
    {"read_matching", kp_read_matching, METH_VARARGS, read_matching_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef kp_module = {
    PyModuleDef_HEAD_INIT, "_kpage",
    "The compiled core of pmaps.kernel.kpage, pagemap and maps: the lookup plan, the span reads, the matching\n"
    "pagemap reads and the maps columns, without the GIL.",
    0, kp_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__kpage(void)
{
    return PyModule_Create(&kp_module);
}
