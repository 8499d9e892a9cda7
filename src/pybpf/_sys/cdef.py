"""The C declarations pybpf uses from libbpf 1.1 and libc, as cffi ``cdef`` text.

Kept apart from ``_libbpf.py`` only because it is long; nothing but
``_libbpf`` imports it.  Every ``*_opts`` struct is written out field by
field (anonymous bitfield padding replaced by named fields) and checked
against the C headers by ``tests/test_binding_layout.py``.
"""

CDEF = r"""
typedef uint8_t __u8;
typedef uint16_t __u16;
typedef uint32_t __u32;
typedef unsigned long long __u64;   /* the kernel's types: the compiled binding shares them */
typedef int32_t __s32;
typedef long long __s64;

struct bpf_object;
struct bpf_program;
struct bpf_map;
struct bpf_link;
struct btf;
struct btf_ext;
struct btf_dump;
struct bpf_insn;
struct ring_buffer;
struct user_ring_buffer;
struct perf_buffer;
struct btf_type { __u32 name_off; __u32 info; union { __u32 size; __u32 type; }; };

enum libbpf_print_level { LIBBPF_WARN, LIBBPF_INFO, LIBBPF_DEBUG };
typedef int (*libbpf_print_fn_t)(enum libbpf_print_level level, const char *fmt, void *args);

__u32 libbpf_major_version(void);
__u32 libbpf_minor_version(void);
const char *libbpf_version_string(void);
int libbpf_strerror(int err, char *buf, size_t size);
const char *libbpf_bpf_attach_type_str(int t);
const char *libbpf_bpf_link_type_str(int t);
const char *libbpf_bpf_map_type_str(int t);
const char *libbpf_bpf_prog_type_str(int t);
libbpf_print_fn_t libbpf_set_print(libbpf_print_fn_t fn);
int libbpf_num_possible_cpus(void);
int libbpf_probe_bpf_prog_type(int prog_type, const void *opts);
int libbpf_probe_bpf_map_type(int map_type, const void *opts);
int libbpf_probe_bpf_helper(int prog_type, int helper_id, const void *opts);
int libbpf_prog_type_by_name(const char *name, int *prog_type, int *expected_attach_type);

struct bpf_prog_load_opts {
    size_t sz;
    int attempts;
    int expected_attach_type;
    __u32 prog_btf_fd;
    __u32 prog_flags;
    __u32 prog_ifindex;
    __u32 kern_version;
    __u32 attach_btf_id;
    __u32 attach_prog_fd;
    __u32 attach_btf_obj_fd;
    const int *fd_array;
    const void *func_info;
    __u32 func_info_cnt;
    __u32 func_info_rec_size;
    const void *line_info;
    __u32 line_info_cnt;
    __u32 line_info_rec_size;
    __u32 log_level;
    __u32 log_size;
    char *log_buf;
};
int bpf_prog_load(int prog_type, const char *prog_name, const char *license, const void *insns,
                  size_t insn_cnt, const struct bpf_prog_load_opts *opts);

/* ---- object ---- */
struct bpf_object_open_opts {
    size_t sz;
    const char *object_name;
    bool relaxed_maps;
    const char *pin_root_path;
    __u32 _pad_attach_prog_fd;
    const char *kconfig;
    const char *btf_custom_path;
    char *kernel_log_buf;
    size_t kernel_log_size;
    __u32 kernel_log_level;
};
struct bpf_object *bpf_object__open_file(const char *path, const struct bpf_object_open_opts *opts);
struct bpf_object *bpf_object__open_mem(const void *obj_buf, size_t obj_buf_sz,
                                        const struct bpf_object_open_opts *opts);
int bpf_object__load(struct bpf_object *obj);
void bpf_object__close(struct bpf_object *obj);
const char *bpf_object__name(const struct bpf_object *obj);
struct btf *bpf_object__btf(const struct bpf_object *obj);
int bpf_object__btf_fd(const struct bpf_object *obj);
struct bpf_program *bpf_object__next_program(const struct bpf_object *obj, struct bpf_program *prog);
struct bpf_map *bpf_object__next_map(const struct bpf_object *obj, const struct bpf_map *map);
struct bpf_program *bpf_object__find_program_by_name(const struct bpf_object *obj, const char *name);
struct bpf_map *bpf_object__find_map_by_name(const struct bpf_object *obj, const char *name);
int bpf_object__pin_maps(struct bpf_object *obj, const char *path);
int bpf_object__unpin_maps(struct bpf_object *obj, const char *path);

/* ---- program ---- */
const char *bpf_program__name(const struct bpf_program *prog);
const char *bpf_program__section_name(const struct bpf_program *prog);
bool bpf_program__autoload(const struct bpf_program *prog);
int bpf_program__set_autoload(struct bpf_program *prog, bool autoload);
bool bpf_program__autoattach(const struct bpf_program *prog);
void bpf_program__set_autoattach(struct bpf_program *prog, bool autoattach);
size_t bpf_program__insn_cnt(const struct bpf_program *prog);
int bpf_program__fd(const struct bpf_program *prog);
int bpf_program__pin(struct bpf_program *prog, const char *path);
int bpf_program__unpin(struct bpf_program *prog, const char *path);
int bpf_program__type(const struct bpf_program *prog);
int bpf_program__set_type(struct bpf_program *prog, int type);
int bpf_program__expected_attach_type(const struct bpf_program *prog);
int bpf_program__set_expected_attach_type(struct bpf_program *prog, int type);
__u32 bpf_program__log_level(const struct bpf_program *prog);
int bpf_program__set_log_level(struct bpf_program *prog, __u32 log_level);
const char *bpf_program__log_buf(const struct bpf_program *prog, size_t *log_size);
int bpf_program__set_log_buf(struct bpf_program *prog, char *log_buf, size_t log_size);
int bpf_program__set_attach_target(struct bpf_program *prog, int attach_prog_fd, const char *attach_func_name);

/* ---- attach ---- */
struct bpf_uprobe_opts {
    size_t sz;
    size_t ref_ctr_offset;
    __u64 bpf_cookie;
    bool retprobe;
    const char *func_name;
};
struct bpf_usdt_opts {
    size_t sz;
    __u64 usdt_cookie;      /* then `size_t :0;` in libbpf.h: no storage */
};
struct bpf_kprobe_opts {
    size_t sz;
    __u64 bpf_cookie;
    size_t offset;
    bool retprobe;
};
struct bpf_tracepoint_opts { size_t sz; __u64 bpf_cookie; };
struct bpf_perf_event_opts { size_t sz; __u64 bpf_cookie; };
struct bpf_trace_opts { size_t sz; __u64 cookie; };
union bpf_iter_link_info {
    struct { __u32 map_fd; } map;
    struct { __u32 order; __u32 cgroup_fd; __u64 cgroup_id; } cgroup;
    struct { __u32 tid; __u32 pid; __u32 pid_fd; } task;
};
struct bpf_iter_attach_opts {
    size_t sz;
    union bpf_iter_link_info *link_info;
    __u32 link_info_len;
};
struct bpf_link *bpf_program__attach(const struct bpf_program *prog);
struct bpf_link *bpf_program__attach_tracepoint(const struct bpf_program *prog,
                                                const char *tp_category, const char *tp_name);
struct bpf_link *bpf_program__attach_raw_tracepoint(const struct bpf_program *prog, const char *tp_name);
struct bpf_link *bpf_program__attach_trace(const struct bpf_program *prog);
struct bpf_link *bpf_program__attach_trace_opts(const struct bpf_program *prog, const struct bpf_trace_opts *opts);
struct bpf_link *bpf_program__attach_lsm(const struct bpf_program *prog);
struct bpf_link *bpf_program__attach_kprobe(const struct bpf_program *prog, bool retprobe, const char *func_name);
struct bpf_link *bpf_program__attach_kprobe_opts(const struct bpf_program *prog, const char *func_name,
                                                 const struct bpf_kprobe_opts *opts);
struct bpf_link *bpf_program__attach_uprobe_opts(const struct bpf_program *prog, int pid,
                                                 const char *binary_path, size_t func_offset,
                                                 const struct bpf_uprobe_opts *opts);
struct bpf_link *bpf_program__attach_usdt(const struct bpf_program *prog, int pid,
                                          const char *binary_path, const char *usdt_provider,
                                          const char *usdt_name, const struct bpf_usdt_opts *opts);
struct bpf_link *bpf_program__attach_iter(const struct bpf_program *prog, const struct bpf_iter_attach_opts *opts);
struct bpf_link *bpf_program__attach_xdp(const struct bpf_program *prog, int ifindex);
struct bpf_link *bpf_program__attach_cgroup(const struct bpf_program *prog, int cgroup_fd);
struct bpf_link *bpf_program__attach_netns(const struct bpf_program *prog, int netns_fd);
struct bpf_link *bpf_program__attach_perf_event(const struct bpf_program *prog, int pfd);
struct bpf_link *bpf_map__attach_struct_ops(const struct bpf_map *map);
struct bpf_link *bpf_program__attach_perf_event_opts(const struct bpf_program *prog, int pfd,
                                                     const struct bpf_perf_event_opts *opts);

/* ---- link ---- */
struct bpf_link *bpf_link__open(const char *path);
int bpf_link__fd(const struct bpf_link *link);
const char *bpf_link__pin_path(const struct bpf_link *link);
int bpf_link__pin(struct bpf_link *link, const char *path);
int bpf_link__unpin(struct bpf_link *link);
void bpf_link__disconnect(struct bpf_link *link);
int bpf_link__detach(struct bpf_link *link);
int bpf_link__destroy(struct bpf_link *link);
struct bpf_link_update_opts { size_t sz; __u32 flags; __u32 old_prog_fd; };
int bpf_link_update(int link_fd, int new_prog_fd, const struct bpf_link_update_opts *opts);

/* ---- tc / xdp ---- */
struct bpf_tc_hook {
    size_t sz;
    int ifindex;
    int attach_point;
    __u32 parent;
};
struct bpf_tc_opts {
    size_t sz;
    int prog_fd;
    __u32 flags;
    __u32 prog_id;
    __u32 handle;
    __u32 priority;
};
int bpf_tc_hook_create(struct bpf_tc_hook *hook);
int bpf_tc_hook_destroy(struct bpf_tc_hook *hook);
int bpf_tc_attach(const struct bpf_tc_hook *hook, struct bpf_tc_opts *opts);
int bpf_tc_detach(const struct bpf_tc_hook *hook, const struct bpf_tc_opts *opts);
int bpf_tc_query(const struct bpf_tc_hook *hook, struct bpf_tc_opts *opts);
struct bpf_xdp_attach_opts { size_t sz; int old_prog_fd; };
int bpf_xdp_attach(int ifindex, int prog_fd, __u32 flags, const struct bpf_xdp_attach_opts *opts);
int bpf_xdp_detach(int ifindex, __u32 flags, const struct bpf_xdp_attach_opts *opts);
int bpf_xdp_query_id(int ifindex, int flags, __u32 *prog_id);

/* ---- map (libbpf object side) ---- */
int bpf_map__fd(const struct bpf_map *map);
int bpf_map__reuse_fd(struct bpf_map *map, int fd);
const char *bpf_map__name(const struct bpf_map *map);
int bpf_map__type(const struct bpf_map *map);
int bpf_map__set_type(struct bpf_map *map, int type);
__u32 bpf_map__max_entries(const struct bpf_map *map);
int bpf_map__set_max_entries(struct bpf_map *map, __u32 max_entries);
__u32 bpf_map__map_flags(const struct bpf_map *map);
int bpf_map__set_map_flags(struct bpf_map *map, __u32 flags);
__u32 bpf_map__key_size(const struct bpf_map *map);
int bpf_map__set_key_size(struct bpf_map *map, __u32 size);
__u32 bpf_map__value_size(const struct bpf_map *map);
int bpf_map__set_value_size(struct bpf_map *map, __u32 size);
__u32 bpf_map__btf_key_type_id(const struct bpf_map *map);
__u32 bpf_map__btf_value_type_id(const struct bpf_map *map);
__u64 bpf_map__map_extra(const struct bpf_map *map);
int bpf_map__set_initial_value(struct bpf_map *map, const void *data, size_t size);
const void *bpf_map__initial_value(struct bpf_map *map, size_t *psize);
bool bpf_map__is_internal(const struct bpf_map *map);
int bpf_map__set_pin_path(struct bpf_map *map, const char *path);
const char *bpf_map__pin_path(const struct bpf_map *map);
bool bpf_map__is_pinned(const struct bpf_map *map);
int bpf_map__pin(struct bpf_map *map, const char *path);
int bpf_map__unpin(struct bpf_map *map, const char *path);
int bpf_map__set_inner_map_fd(struct bpf_map *map, int fd);
struct bpf_map *bpf_map__inner_map(struct bpf_map *map);
int bpf_map__set_autocreate(struct bpf_map *map, bool autocreate);

/* ---- raw syscalls (bpf.h) ---- */
struct bpf_map_create_opts {
    size_t sz;
    __u32 btf_fd;
    __u32 btf_key_type_id;
    __u32 btf_value_type_id;
    __u32 btf_vmlinux_value_type_id;
    __u32 inner_map_fd;
    __u32 map_flags;
    __u64 map_extra;
    __u32 numa_node;
    __u32 map_ifindex;
};
int bpf_map_create(int map_type, const char *map_name, __u32 key_size, __u32 value_size,
                   __u32 max_entries, const struct bpf_map_create_opts *opts);
int bpf_map_update_elem(int fd, const void *key, const void *value, __u64 flags);
int bpf_map_lookup_elem(int fd, const void *key, void *value);
int bpf_map_lookup_elem_flags(int fd, const void *key, void *value, __u64 flags);
int bpf_map_lookup_and_delete_elem(int fd, const void *key, void *value);
int bpf_map_delete_elem(int fd, const void *key);
int bpf_map_get_next_key(int fd, const void *key, void *next_key);
int bpf_map_freeze(int fd);
struct bpf_map_batch_opts { size_t sz; __u64 elem_flags; __u64 flags; };
int bpf_map_delete_batch(int fd, const void *keys, __u32 *count, const struct bpf_map_batch_opts *opts);
int bpf_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values,
                         __u32 *count, const struct bpf_map_batch_opts *opts);
int bpf_map_lookup_and_delete_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values,
                                    __u32 *count, const struct bpf_map_batch_opts *opts);
int bpf_map_update_batch(int fd, const void *keys, const void *values, __u32 *count,
                         const struct bpf_map_batch_opts *opts);
int bpf_obj_pin(int fd, const char *pathname);
int bpf_obj_get(const char *pathname);
int bpf_prog_attach(int prog_fd, int attachable_fd, int type, unsigned int flags);
int bpf_prog_detach2(int prog_fd, int attachable_fd, int type);
int bpf_link_detach(int link_fd);
int bpf_iter_create(int link_fd);
int bpf_prog_get_next_id(__u32 start_id, __u32 *next_id);
int bpf_map_get_next_id(__u32 start_id, __u32 *next_id);
int bpf_btf_get_next_id(__u32 start_id, __u32 *next_id);
int bpf_link_get_next_id(__u32 start_id, __u32 *next_id);
int bpf_prog_get_fd_by_id(__u32 id);
int bpf_map_get_fd_by_id(__u32 id);
int bpf_btf_get_fd_by_id(__u32 id);
int bpf_link_get_fd_by_id(__u32 id);
int bpf_obj_get_info_by_fd(int bpf_fd, void *info, __u32 *info_len);
int bpf_raw_tracepoint_open(const char *name, int prog_fd);
int bpf_enable_stats(int type);

struct bpf_test_run_opts {
    size_t sz;
    const void *data_in;
    void *data_out;
    __u32 data_size_in;
    __u32 data_size_out;
    const void *ctx_in;
    void *ctx_out;
    __u32 ctx_size_in;
    __u32 ctx_size_out;
    __u32 retval;
    int repeat;
    __u32 duration;
    __u32 flags;
    __u32 cpu;
    __u32 batch_size;
};
int bpf_prog_test_run_opts(int prog_fd, struct bpf_test_run_opts *opts);

struct bpf_prog_info {
    __u32 type;
    __u32 id;
    __u8  tag[8];
    __u32 jited_prog_len;
    __u32 xlated_prog_len;
    __u64 jited_prog_insns;
    __u64 xlated_prog_insns;
    __u64 load_time;
    __u32 created_by_uid;
    __u32 nr_map_ids;
    __u64 map_ids;
    char name[16];
    __u32 ifindex;
    __u32 gpl_compatible_bits;
    __u64 netns_dev;
    __u64 netns_ino;
    __u32 nr_jited_ksyms;
    __u32 nr_jited_func_lens;
    __u64 jited_ksyms;
    __u64 jited_func_lens;
    __u32 btf_id;
    __u32 func_info_rec_size;
    __u64 func_info;
    __u32 nr_func_info;
    __u32 nr_line_info;
    __u64 line_info;
    __u64 jited_line_info;
    __u32 nr_jited_line_info;
    __u32 line_info_rec_size;
    __u32 jited_line_info_rec_size;
    __u32 nr_prog_tags;
    __u64 prog_tags;
    __u64 run_time_ns;
    __u64 run_cnt;
    __u64 recursion_misses;
    __u32 verified_insns;
    __u32 attach_btf_obj_id;
    __u32 attach_btf_id;
    __u32 _pad_end;
};
struct bpf_map_info {
    __u32 type;
    __u32 id;
    __u32 key_size;
    __u32 value_size;
    __u32 max_entries;
    __u32 map_flags;
    char  name[16];
    __u32 ifindex;
    __u32 btf_vmlinux_value_type_id;
    __u64 netns_dev;
    __u64 netns_ino;
    __u32 btf_id;
    __u32 btf_key_type_id;
    __u32 btf_value_type_id;
    __u32 _pad;
    __u64 map_extra;
};
struct bpf_btf_info {
    __u64 btf;
    __u32 btf_size;
    __u32 id;
    __u64 name;
    __u32 name_len;
    __u32 kernel_btf;
};

/* ---- BTF ---- */
void btf__free(struct btf *btf);
struct btf *btf__new(const void *data, __u32 size);
struct btf *btf__parse(const char *path, struct btf_ext **btf_ext);
struct btf *btf__parse_split(const char *path, struct btf *base_btf);
struct btf *btf__load_vmlinux_btf(void);
struct btf *btf__load_from_kernel_by_id(__u32 id);
struct btf *btf__load_from_kernel_by_id_split(__u32 id, struct btf *base_btf);
__s32 btf__find_by_name(const struct btf *btf, const char *type_name);
__s32 btf__find_by_name_kind(const struct btf *btf, const char *type_name, __u32 kind);
__u32 btf__type_cnt(const struct btf *btf);
const struct btf_type *btf__type_by_id(const struct btf *btf, __u32 id);
__s64 btf__resolve_size(const struct btf *btf, __u32 type_id);
const void *btf__raw_data(const struct btf *btf, __u32 *size);
const char *btf__name_by_offset(const struct btf *btf, __u32 offset);
void btf_ext__free(struct btf_ext *btf_ext);

typedef void (*btf_dump_printf_fn_t)(void *ctx, const char *fmt, void *args);
struct btf_dump_opts { size_t sz; };
struct btf_dump *btf_dump__new(const struct btf *btf, btf_dump_printf_fn_t printf_fn, void *ctx,
                               const struct btf_dump_opts *opts);
void btf_dump__free(struct btf_dump *d);
int btf_dump__dump_type(struct btf_dump *d, __u32 id);

/* ---- ring / perf buffers ---- */
typedef int (*ring_buffer_sample_fn)(void *ctx, void *data, size_t size);
struct ring_buffer_opts { size_t sz; };
struct ring_buffer *ring_buffer__new(int map_fd, ring_buffer_sample_fn sample_cb, void *ctx,
                                     const struct ring_buffer_opts *opts);
void ring_buffer__free(struct ring_buffer *rb);
int ring_buffer__add(struct ring_buffer *rb, int map_fd, ring_buffer_sample_fn sample_cb, void *ctx);
int ring_buffer__poll(struct ring_buffer *rb, int timeout_ms);
int ring_buffer__consume(struct ring_buffer *rb);
int ring_buffer__epoll_fd(const struct ring_buffer *rb);
struct user_ring_buffer_opts { size_t sz; };
struct user_ring_buffer *user_ring_buffer__new(int map_fd, const struct user_ring_buffer_opts *opts);
void *user_ring_buffer__reserve(struct user_ring_buffer *rb, __u32 size);
void *user_ring_buffer__reserve_blocking(struct user_ring_buffer *rb, __u32 size, int timeout_ms);
void user_ring_buffer__submit(struct user_ring_buffer *rb, void *sample);
void user_ring_buffer__discard(struct user_ring_buffer *rb, void *sample);
void user_ring_buffer__free(struct user_ring_buffer *rb);
typedef void (*perf_buffer_sample_fn)(void *ctx, int cpu, void *data, __u32 size);
typedef void (*perf_buffer_lost_fn)(void *ctx, int cpu, __u64 cnt);
struct perf_buffer_opts { size_t sz; };
struct perf_buffer *perf_buffer__new(int map_fd, size_t page_cnt, perf_buffer_sample_fn sample_cb,
                                     perf_buffer_lost_fn lost_cb, void *ctx,
                                     const struct perf_buffer_opts *opts);
void perf_buffer__free(struct perf_buffer *pb);
int perf_buffer__epoll_fd(const struct perf_buffer *pb);
int perf_buffer__poll(struct perf_buffer *pb, int timeout_ms);
int perf_buffer__consume(struct perf_buffer *pb);
size_t perf_buffer__buffer_cnt(const struct perf_buffer *pb);
"""

# Symbols newer than libbpf 1.1, detected at run time (never required): each function here is
# listed in OPTIONAL_SYMBOLS with the libbpf release that added it (its symbol version node,
# LIBBPF_1.N.0). tests/test_binding_layout.py checks both lists against the loaded libbpf.
OPTIONAL_CDEF = r"""
struct ring;
struct ring *ring_buffer__ring(struct ring_buffer *rb, unsigned int idx);
int ring_buffer__consume_n(struct ring_buffer *rb, size_t n);
int bpf_prog_get_info_by_fd(int prog_fd, struct bpf_prog_info *info, __u32 *info_len);
int bpf_map_get_info_by_fd(int map_fd, struct bpf_map_info *info, __u32 *info_len);

/* issue 25: tcx (1.3), uprobe_multi (1.3), struct_ops link update (1.2), BPF tokens (1.4/1.5) */
struct bpf_tcx_opts {
    size_t sz;
    __u32 flags;
    __u32 relative_fd;
    __u32 relative_id;
    __u64 expected_revision;
};
struct bpf_link *bpf_program__attach_tcx(const struct bpf_program *prog, int ifindex,
                                         const struct bpf_tcx_opts *opts);
struct bpf_uprobe_multi_opts {
    size_t sz;
    const char **syms;
    const unsigned long *offsets;
    const unsigned long *ref_ctr_offsets;
    const __u64 *cookies;
    size_t cnt;
    bool retprobe;
};
struct bpf_link *bpf_program__attach_uprobe_multi(const struct bpf_program *prog, int pid,
                                                  const char *binary_path, const char *func_pattern,
                                                  const struct bpf_uprobe_multi_opts *opts);
int bpf_link__update_map(struct bpf_link *link, const struct bpf_map *map);
int bpf_object__token_fd(const struct bpf_object *obj);
struct bpf_token_create_opts { size_t sz; __u32 flags; };
int bpf_token_create(int bpffs_fd, struct bpf_token_create_opts *opts);
/* libbpf 1.4's bpf_object_open_opts: 1.1's fields, then bpf_token_path */
struct bpf_object_open_opts_1_4 {
    size_t sz;
    const char *object_name;
    bool relaxed_maps;
    const char *pin_root_path;
    __u32 _pad_attach_prog_fd;
    const char *kconfig;
    const char *btf_custom_path;
    char *kernel_log_buf;
    size_t kernel_log_size;
    __u32 kernel_log_level;
    const char *bpf_token_path;
};
"""

# function of OPTIONAL_CDEF -> the libbpf release that added it
OPTIONAL_SYMBOLS: dict[str, tuple[int, int]] = {
    "bpf_prog_get_info_by_fd": (1, 2),
    "bpf_map_get_info_by_fd": (1, 2),
    "ring_buffer__ring": (1, 3),
    "ring_buffer__consume_n": (1, 5),
    # issue 25
    "bpf_program__attach_tcx": (1, 3),
    "bpf_program__attach_uprobe_multi": (1, 3),
    "bpf_link__update_map": (1, 2),
    "bpf_token_create": (1, 4),
    "bpf_object__token_fd": (1, 5),
}

LIBC_CDEF = r"""
int vsnprintf(char *str, size_t size, const char *format, void *ap);
long syscall(long number, ...);
int close(int fd);
int if_nametoindex(const char *ifname);
int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const void *data);
int umount2(const char *target, int flags);
struct statfs { long f_type; char _pad_rest[112]; };
int statfs(const char *path, struct statfs *buf);
"""
