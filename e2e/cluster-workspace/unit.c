/* One unit of the cluster workspace, compiled once per -DUNIT=N.
 *
 * The 64 generated functions have external linkage, so -O2 must compile
 * every one of them: that is what makes each compile take a while. Their
 * names carry the unit number, so two units never clash at link time.
 * Unsigned arithmetic: overflow wraps instead of being undefined. */

#ifndef UNIT
#error "compile with -DUNIT=N"
#endif

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(CAT(CAT(unit, UNIT), _), name)

void register_unit(int id, unsigned long (*run)(unsigned long));

#define F(k)                                                                 \
  unsigned long FN(CAT(f, k))(unsigned long x, const unsigned long *table) { \
    unsigned long s = (unsigned long)k * UNIT;                               \
    for (int i = 0; i < 16; i++) {                                           \
      s = s * 31 + (x ^ table[(i * k) & 15]);                                \
      x = (x << 3) ^ (x >> 5) ^ s ^ table[(s + i) & 15];                     \
      if (s & 1)                                                             \
        x += table[i];                                                       \
      else                                                                   \
        s -= x * k;                                                          \
    }                                                                        \
    return s ^ x;                                                            \
  }
#define F4(k) F(CAT(k, 0)) F(CAT(k, 1)) F(CAT(k, 2)) F(CAT(k, 3))
#define F16(k) F4(CAT(k, 0)) F4(CAT(k, 1)) F4(CAT(k, 2)) F4(CAT(k, 3))
#define F64(k) F16(CAT(k, 0)) F16(CAT(k, 1)) F16(CAT(k, 2)) F16(CAT(k, 3))

F64(1)

#define CALL(k) sum ^= FN(CAT(f, k))(x + sum, table);
#define CALL4(k) CALL(CAT(k, 0)) CALL(CAT(k, 1)) CALL(CAT(k, 2)) CALL(CAT(k, 3))
#define CALL16(k) CALL4(CAT(k, 0)) CALL4(CAT(k, 1)) CALL4(CAT(k, 2)) CALL4(CAT(k, 3))
#define CALL64(k) CALL16(CAT(k, 0)) CALL16(CAT(k, 1)) CALL16(CAT(k, 2)) CALL16(CAT(k, 3))

static unsigned long run(unsigned long x) {
  unsigned long table[16];
  for (int i = 0; i < 16; i++)
    table[i] = x * (i + 1) + UNIT;
  unsigned long sum = 0;
  CALL64(1)
  return sum;
}

__attribute__((constructor)) static void register_this_unit(void) {
  register_unit(UNIT, run);
}
