# fp64 check of the KeyVector chunked backward formulas of delta_rule_chunk_bwd.cu (grad_kv, dg_kv,
# states_kv reverse, dui_kv) against central differences of the recurrent form.
import numpy as np
rng = np.random.default_rng(0)
T, K, V, C = 37, 6, 5, 16
scale = 0.7
q = rng.standard_normal((T, K)) * 0.5
k = rng.standard_normal((T, K)); k /= np.linalg.norm(k, axis=1, keepdims=True)
v = rng.standard_normal((T, V))
beta = rng.uniform(0.1, 1.5, T)
g = rng.uniform(-2.0, 0.0, (T, K))
h0 = rng.standard_normal((K, V))
dO = rng.standard_normal((T, V))
dht = rng.standard_normal((K, V))

def fwd(q, k, v, beta, g, h0):
    S = h0.copy(); o = np.zeros((T, V))
    for t in range(T):
        P = np.exp(g[t])[:, None] * S
        u = v[t] - P.T @ k[t]
        S = P + beta[t] * np.outer(k[t], u)
        o[t] = scale * S.T @ q[t]
    return o, S

def loss(*a):
    o, S = fwd(*a)
    return (o * dO).sum() + (S * dht).sum()

args = [q, k, v, beta, g, h0]
num = []
eps = 1e-6
for ai, a in enumerate(args):
    d = np.zeros_like(a)
    it = np.nditer(a, flags=['multi_index'])
    for _ in it:
        idx = it.multi_index
        a[idx] += eps; lp = loss(*args)
        a[idx] -= 2 * eps; lm = loss(*args)
        a[idx] += eps
        d[idx] = (lp - lm) / (2 * eps)
    num.append(d)

# ---- chunked forward (prep + states) ----
chunks = [(c0, min(c0 + C, T)) for c0 in range(0, T, C)]
S = h0.copy(); Sc = []; Uall = np.zeros((T, V)); per = []
for (r0, r1) in chunks:
    L = r1 - r0
    b = np.cumsum(g[r0:r1], axis=0)
    B = b[-1]
    kk, vv, be = k[r0:r1], v[r0:r1], beta[r0:r1]
    Akk = np.zeros((L, L))
    for t in range(L):
        for s in range(t):
            Akk[t, s] = np.sum(kk[t] * kk[s] * np.exp(b[t] - b[s]))
    A = be[:, None] * Akk
    Tm = np.linalg.inv(np.eye(L) + A)
    W = Tm @ (be[:, None] * kk * np.exp(b))
    Ut = Tm @ (be[:, None] * vv)
    kt = kk * np.exp(B - b)
    Sc.append(S.copy())
    U = Ut - W @ S
    Uall[r0:r1] = U
    S = np.exp(B)[:, None] * S + kt.T @ U
    per.append(dict(b=b, B=B, Akk=Akk, Tm=Tm, W=W, kt=kt, U=U))
ht = S
o_ref, ht_ref = fwd(*args)
# output
o = np.zeros((T, V))
for ci, (r0, r1) in enumerate(chunks):
    P = per[ci]; b = P['b']; L = r1 - r0
    M = np.zeros((L, L))
    for t in range(L):
        for s in range(t + 1):
            M[t, s] = np.sum(q[r0 + t] * k[r0 + s] * np.exp(b[t] - b[s]))
    P['M'] = M
    o[r0:r1] = scale * ((q[r0:r1] * np.exp(b)) @ Sc[ci] + M @ P['U'])
print('fwd o err', np.abs(o - o_ref).max(), 'ht err', np.abs(ht - ht_ref).max())

# ---- backward ----
dq = np.zeros_like(q); dk = np.zeros_like(k); dv = np.zeros_like(v)
dbeta = np.zeros_like(beta); dg = np.zeros_like(g)
dS = dht.copy()
for ci in reversed(range(len(chunks))):
    r0, r1 = chunks[ci]; P = per[ci]; b, B = P['b'], P['B']; L = r1 - r0
    U, W, kt, Tm, Akk, M = P['U'], P['W'], P['kt'], P['Tm'], P['Akk'], P['M']
    dOc = dO[r0:r1]; qq, kk, vv, be = q[r0:r1], k[r0:r1], v[r0:r1], beta[r0:r1]
    Sc_ = Sc[ci]
    dSn = dS.copy()  # dS_{c+1}
    # reverse states
    du_in = scale * M.T @ dOc
    sdk = np.sum(dSn * Sc_, axis=1)
    Y = U @ dSn.T  # [L, K]
    dU = du_in + kt @ dSn
    qt = scale * qq * np.exp(b)
    dS = np.exp(B)[:, None] * dSn + qt.T @ dOc - W.T @ dU
    # grad
    dR = Tm.T @ dU
    dv[r0:r1] = be[:, None] * dR
    R = vv - (kk * np.exp(b)) @ Sc_
    db_ = np.zeros(L)
    dA = np.zeros((L, L))
    for s in range(L):
        for r in range(s):
            dA[s, r] = -dR[s] @ U[r]
    dbeta[r0:r1] = np.sum(dR * R, axis=1) + np.sum(dA * Akk, axis=1)
    E = be[:, None] * dA
    dM = np.zeros((L, L))
    for t in range(L):
        for s in range(t + 1):
            dM[t, s] = scale * dOc[t] @ U[s]
    dqh = np.zeros((L, K)); dkh = np.zeros((L, K)); db = np.zeros((L, K))
    for t in range(L):
        inter = scale * np.exp(b[t]) * (Sc_ @ dOc[t])
        intra = sum((dM[t, s] * kk[s] * np.exp(b[t] - b[s]) for s in range(t)), np.zeros(K))
        db[t] += qq[t] * (inter + intra)
        dqh[t] = inter + intra + dM[t, t] * kk[t]
    for r in range(L):
        col = sum(((E[s, r] * kk[s] + dM[s, r] * qq[s]) * np.exp(b[s] - b[r]) for s in range(r + 1, L)), np.zeros(K))
        row = sum((E[r, s] * kk[s] * np.exp(b[r] - b[s]) for s in range(r)), np.zeros(K))
        row = row - be[r] * np.exp(b[r]) * (Sc_ @ dR[r])
        X = np.exp(B - b[r]) * Y[r]
        db[r] += kk[r] * (row - col)
        dkh[r] = col + row + X + dM[r, r] * qq[r]
    dq[r0:r1] = dqh; dk[r0:r1] = dkh
    # dg kernel
    state = np.exp(B) * sdk
    pre = np.zeros(K); prefix = np.zeros((L, K))
    for t in range(L):
        prefix[t] = pre
        pre = pre + kt[t] * Y[t]
    suf = np.zeros(K)
    for t in reversed(range(L)):
        suf = suf + db[t]
        dg[r0 + t] = (suf + prefix[t]) + state
dh0 = dS
for name, a, n in zip(['dq', 'dk', 'dv', 'dbeta', 'dg', 'dh0'], [dq, dk, dv, dbeta, dg, dh0], num):
    print(name, 'max abs err', np.abs(a - n).max(), 'max |ref|', np.abs(n).max())
