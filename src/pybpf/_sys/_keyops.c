/* pybpf._sys._keyops: m[k], m[k] = v, del m[k] and k in m on array and hash maps, in C.
 *
 * A KeyOps holds one map's fd (a copy the Map owns through its FdRef), the key's integer
 * type, the value's scalar type and the Map's general paths. Its four KeyOp objects are
 * vectorcall callables the Map installs as its per-key dunders: the key (and the value)
 * go from the Python object straight into a C integer, one bpf() call through libbpf, and
 * a lookup's value comes back as a numpy scalar of the map's value type. No cffi, no
 * Python frame, no buffer shared between calls.
 *
 * Anything but a plain success (a key of another type or out of range, a missing key, any
 * errno) calls the Map's general path with the same arguments, which redoes the call and
 * raises the usual typed error; so this file never raises an error of its own.
 *
 * The fd guard: the GIL is held from the key conversion to the end of the syscall (these
 * map types never sleep in a lookup, update or delete, and releasing the GIL costs more
 * than the call), so Map.close() in another thread cannot run in between. It calls
 * KeyOps.close() before it gives up the fd; a KeyOps closed, or closed by code a key's
 * __index__ ran, sends every later call to the general path (which raises ClosedError).
 * The state is read after the conversion, so no Python code runs between the check and
 * the syscall.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* libbpf (linked with -lbpf): declared here, as in <bpf/bpf.h>, to need no more headers */
int bpf_map_lookup_elem(int fd, const void *key, void *value);
int bpf_map_update_elem(int fd, const void *key, const void *value, unsigned long long flags);
int bpf_map_delete_elem(int fd, const void *key);

enum { OP_GET, OP_SET, OP_DEL, OP_HAS, OP_COUNT };
static const char *const op_names[OP_COUNT] = {"getitem", "setitem", "delitem", "contains"};

typedef struct {
    PyObject_HEAD
    int fd;
    int closed;
    int key_size;          /* 1, 2, 4 or 8 */
    int key_signed;
    int value_size;        /* 1, 2, 4 or 8 */
    char value_kind;       /* 'i', 'u' or 'f' */
    PyTypeObject *scalar;  /* the numpy scalar type of a value (np.uint64...) */
    PyObject *fallback[OP_COUNT];
} KeyOps;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    KeyOps *ops;
    int op;
} KeyOp;

/* numpy's scalar objects are {PyObject_HEAD; T obval;} (numpy/arrayscalars.h), the float64
   one a Python float (ob_fval at the same place); KeyOps.scalar() lets the caller check it. */
typedef struct {
    PyObject_HEAD
    union { uint64_t u; int64_t i; double d; float f; unsigned char raw[8]; } obval;
} ScalarLayout;

/* -------- conversions: 1 done, 0 not representable here (the general path decides) -------- */

static int integer_of(PyObject *obj, int size, int is_signed, uint64_t *out)
{
    PyObject *index = NULL;
    int ok = 0;

    if (!PyLong_Check(obj)) {
        if (PyFloat_Check(obj) || !Py_TYPE(obj)->tp_as_number || !Py_TYPE(obj)->tp_as_number->nb_index)
            return 0;
        index = PyNumber_Index(obj);  /* numpy integers; may run Python code */
        if (!index) {
            PyErr_Clear();
            return 0;
        }
        obj = index;
    }
    if (is_signed) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
        if (!(v == -1 && PyErr_Occurred()) && !overflow) {
            long long lo = size == 8 ? INT64_MIN : -(1LL << (8 * size - 1));
            long long hi = size == 8 ? INT64_MAX : (1LL << (8 * size - 1)) - 1;
            if (v >= lo && v <= hi) {
                *out = (uint64_t)v;
                ok = 1;
            }
        }
    } else {
        unsigned long long v = PyLong_AsUnsignedLongLong(obj);
        if (!(v == (unsigned long long)-1 && PyErr_Occurred())
                && (size == 8 || v <= (1ULL << (8 * size)) - 1)) {
            *out = v;
            ok = 1;
        }
    }
    if (PyErr_Occurred())
        PyErr_Clear();
    Py_XDECREF(index);
    return ok;
}

static int value_of(KeyOps *ops, PyObject *obj, unsigned char *buf)
{
    if (ops->value_kind == 'f') {
        double d;
        if (PyFloat_CheckExact(obj))
            d = PyFloat_AS_DOUBLE(obj);
        else if (PyLong_Check(obj) || PyFloat_Check(obj)) {
            d = PyFloat_AsDouble(obj);
            if (d == -1.0 && PyErr_Occurred()) {
                PyErr_Clear();
                return 0;
            }
        } else
            return 0;  /* numpy float32 and others: the general path converts them */
        if (ops->value_size == 4) {
            float f = (float)d;
            memcpy(buf, &f, 4);
        } else
            memcpy(buf, &d, 8);
        return 1;
    }
    uint64_t v;
    if (!integer_of(obj, ops->value_size, ops->value_kind == 'i', &v))
        return 0;
    memcpy(buf, &v, (size_t)ops->value_size);  /* little-endian: the low bytes */
    return 1;
}

static PyObject *scalar_of(KeyOps *ops, const unsigned char *buf)
{
    ScalarLayout *s = (ScalarLayout *)ops->scalar->tp_alloc(ops->scalar, 0);
    if (!s)
        return NULL;
    memcpy(s->obval.raw, buf, (size_t)ops->value_size);
    return (PyObject *)s;
}

/* -------- the four operations -------- */

static PyObject *fallback(KeyOp *self, PyObject *const *args, size_t nargs)
{
    PyObject *general = self->ops->fallback[self->op];
    if (!general) {  /* only after the garbage collector cleared a dead map's state */
        PyErr_SetString(PyExc_ValueError, "this map's per-key operations are gone");
        return NULL;
    }
    return PyObject_Vectorcall(general, args, nargs, NULL);
}

static PyObject *keyop_call(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    KeyOp *self = (KeyOp *)callable;
    KeyOps *ops = self->ops;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t want = self->op == OP_SET ? 2 : 1;
    unsigned char value[8] = {0};
    uint64_t key;
    int ret;

    if (kwnames || nargs != want) {
        PyErr_Format(PyExc_TypeError, "%s takes %zd positional argument%s", op_names[self->op], want,
                     want == 1 ? "" : "s");
        return NULL;
    }
    if (!integer_of(args[0], ops->key_size, ops->key_signed, &key))
        return fallback(self, args, (size_t)nargs);
    if (self->op == OP_SET && !value_of(ops, args[1], value))
        return fallback(self, args, (size_t)nargs);
    if (ops->closed)  /* read after the conversions, which may have run Python code */
        return fallback(self, args, (size_t)nargs);
    /* the key's low bytes, in place (little-endian) */
    switch (self->op) {
    case OP_GET:
        ret = bpf_map_lookup_elem(ops->fd, &key, value);
        if (ret == 0)
            return scalar_of(ops, value);
        break;
    case OP_HAS:
        ret = bpf_map_lookup_elem(ops->fd, &key, value);
        if (ret == 0)
            Py_RETURN_TRUE;
        if (ret == -ENOENT)
            Py_RETURN_FALSE;
        break;
    case OP_SET:
        ret = bpf_map_update_elem(ops->fd, &key, value, 0);
        if (ret == 0)
            Py_RETURN_NONE;
        break;
    default:
        ret = bpf_map_delete_elem(ops->fd, &key);
        if (ret == 0)
            Py_RETURN_NONE;
        break;
    }
    return fallback(self, args, (size_t)nargs);
}

/* -------- KeyOp: the callables -------- */

static void keyop_dealloc(KeyOp *self)
{
    PyObject_GC_UnTrack(self);
    Py_CLEAR(self->ops);
    PyObject_GC_Del(self);
}

static int keyop_traverse(KeyOp *self, visitproc visit, void *arg)
{
    Py_VISIT(self->ops);
    return 0;
}

static int keyop_clear(KeyOp *self)
{
    Py_CLEAR(self->ops);
    return 0;
}

static PyObject *keyop_repr(KeyOp *self)
{
    return PyUnicode_FromFormat("<pybpf per-key %s of fd %d%s>", op_names[self->op], self->ops->fd,
                                self->ops->closed ? " (closed)" : "");
}

static PyTypeObject KeyOpType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pybpf._sys._keyops.KeyOp",
    .tp_doc = "One per-key operation of one map (a vectorcall callable; see KeyOps).",
    .tp_basicsize = sizeof(KeyOp),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(KeyOp, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_dealloc = (destructor)keyop_dealloc,
    .tp_traverse = (traverseproc)keyop_traverse,
    .tp_clear = (inquiry)keyop_clear,
    .tp_repr = (reprfunc)keyop_repr,
};

/* -------- KeyOps: one map's state -------- */

static int keyops_init(KeyOps *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"fd", "key_size", "key_signed", "value_kind", "value_size", "scalar",
                             "getitem", "setitem", "delitem", "contains", NULL};
    int fd, key_size, key_signed, value_size;
    const char *kind;
    PyObject *scalar, *fb[OP_COUNT];

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iipsiOOOOO", kwlist, &fd, &key_size, &key_signed, &kind,
                                     &value_size, &scalar, &fb[0], &fb[1], &fb[2], &fb[3]))
        return -1;
    if ((key_size != 1 && key_size != 2 && key_size != 4 && key_size != 8)
            || (value_size != 1 && value_size != 2 && value_size != 4 && value_size != 8)
            || strlen(kind) != 1 || !strchr("iuf", kind[0]) || (kind[0] == 'f' && value_size < 4)) {
        PyErr_SetString(PyExc_ValueError, "KeyOps: keys and values are 1, 2, 4 or 8-byte integers "
                                          "(values: or 4/8-byte floats)");
        return -1;
    }
    if (!PyType_Check(scalar) || ((PyTypeObject *)scalar)->tp_basicsize < (Py_ssize_t)sizeof(ScalarLayout)) {
        PyErr_SetString(PyExc_TypeError, "KeyOps: scalar must be a numpy scalar type");
        return -1;
    }
    for (int i = 0; i < OP_COUNT; i++)
        if (!PyCallable_Check(fb[i])) {
            PyErr_Format(PyExc_TypeError, "KeyOps: %s must be callable", op_names[i]);
            return -1;
        }
    self->fd = fd;
    self->closed = 0;
    self->key_size = key_size;
    self->key_signed = key_signed;
    self->value_kind = kind[0];
    self->value_size = value_size;
    Py_XSETREF(self->scalar, (PyTypeObject *)Py_NewRef(scalar));
    for (int i = 0; i < OP_COUNT; i++)
        Py_XSETREF(self->fallback[i], Py_NewRef(fb[i]));
    return 0;
}

static void keyops_dealloc(KeyOps *self)
{
    PyObject_GC_UnTrack(self);
    Py_CLEAR(self->scalar);
    for (int i = 0; i < OP_COUNT; i++)
        Py_CLEAR(self->fallback[i]);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int keyops_traverse(KeyOps *self, visitproc visit, void *arg)
{
    Py_VISIT(self->scalar);
    for (int i = 0; i < OP_COUNT; i++)
        Py_VISIT(self->fallback[i]);
    return 0;
}

static int keyops_clear(KeyOps *self)
{
    self->closed = 1;
    Py_CLEAR(self->scalar);
    for (int i = 0; i < OP_COUNT; i++)
        Py_CLEAR(self->fallback[i]);
    return 0;
}

static PyObject *keyops_op(KeyOps *self, PyObject *name)
{
    const char *text = PyUnicode_AsUTF8(name);
    if (!text)
        return NULL;
    for (int i = 0; i < OP_COUNT; i++) {
        if (strcmp(text, op_names[i]) == 0) {
            KeyOp *op = PyObject_GC_New(KeyOp, &KeyOpType);
            if (!op)
                return NULL;
            op->vectorcall = keyop_call;
            op->ops = (KeyOps *)Py_NewRef(self);
            op->op = i;
            PyObject_GC_Track(op);
            return (PyObject *)op;
        }
    }
    PyErr_Format(PyExc_ValueError, "no per-key operation %R (getitem, setitem, delitem, contains)", name);
    return NULL;
}

static PyObject *keyops_close(KeyOps *self, PyObject *unused)
{
    self->closed = 1;
    Py_RETURN_NONE;
}

static PyObject *keyops_scalar(KeyOps *self, PyObject *raw)
{
    char *data;
    Py_ssize_t len;
    if (PyBytes_AsStringAndSize(raw, &data, &len) < 0)
        return NULL;
    if (len != self->value_size || !self->scalar) {
        PyErr_SetString(PyExc_ValueError, "scalar() takes the bytes of one value");
        return NULL;
    }
    return scalar_of(self, (const unsigned char *)data);
}

static PyObject *keyops_get_closed(KeyOps *self, void *unused)
{
    return PyBool_FromLong(self->closed);
}

static PyMethodDef keyops_methods[] = {
    {"op", (PyCFunction)keyops_op, METH_O,
     "op(name) -> the callable of 'getitem', 'setitem', 'delitem' or 'contains'."},
    {"close", (PyCFunction)keyops_close, METH_NOARGS,
     "From now on every call goes to the general path (call it before the fd is closed)."},
    {"scalar", (PyCFunction)keyops_scalar, METH_O,
     "scalar(raw bytes) -> the numpy scalar a lookup returns for them (a self-check)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef keyops_getset[] = {
    {"closed", (getter)keyops_get_closed, NULL, "True once close() ran.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject KeyOpsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pybpf._sys._keyops.KeyOps",
    .tp_doc = "KeyOps(fd, key_size, key_signed, value_kind, value_size, scalar, getitem, setitem, delitem, "
              "contains): the per-key operations of one array or hash map with integer keys and scalar "
              "values; the four callables fall back to the given general paths.",
    .tp_basicsize = sizeof(KeyOps),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)keyops_init,
    .tp_dealloc = (destructor)keyops_dealloc,
    .tp_traverse = (traverseproc)keyops_traverse,
    .tp_clear = (inquiry)keyops_clear,
    .tp_methods = keyops_methods,
    .tp_getset = keyops_getset,
};

static struct PyModuleDef keyops_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pybpf._sys._keyops",
    .m_doc = "Per-key map access in C (see pybpf.maps.fastpath).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__keyops(void)
{
    PyObject *m;
    if (PyType_Ready(&KeyOpType) < 0 || PyType_Ready(&KeyOpsType) < 0)
        return NULL;
    m = PyModule_Create(&keyops_module);
    if (!m)
        return NULL;
    if (PyModule_AddObjectRef(m, "KeyOps", (PyObject *)&KeyOpsType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
