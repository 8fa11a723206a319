# Rounding model of the KeyVector chunked kernels (the bf16 roundings they keep; split products
# treated as exact) against the exact fp64 chunked algorithm: relative RMS of o, dq, dk, dv, dβ, dg.
import numpy as np, sys
def bf(x):
    x = np.asarray(x, dtype=np.float32)
    u = x.view(np.uint32).astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)
    return u.view(np.float32).astype(np.float64)
seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
T = int(sys.argv[2]) if len(sys.argv) > 2 else 300
glo = float(sys.argv[3]) if len(sys.argv) > 3 else -1.0
K = V = 64; C = 64; scale = K ** -0.5
rng = np.random.default_rng(seed)
q = bf(rng.standard_normal((T, K))); k = bf(rng.standard_normal((T, K)))
q = q / np.linalg.norm(q, axis=1, keepdims=True); k = k / np.linalg.norm(k, axis=1, keepdims=True)
v = bf(rng.standard_normal((T, V))); dO = bf(rng.standard_normal((T, V)))
beta = rng.uniform(0.02, 0.98, T); g = rng.uniform(glo, 0, (T, K))
h0 = rng.standard_normal((K, V)); dht = rng.standard_normal((K, V))

def run(r):  # r: rounding function (identity = exact)
    chunks = [(c0, min(c0 + C, T)) for c0 in range(0, T, C)]
    S = h0.copy(); per = []
    o = np.zeros((T, V))
    for (r0, r1) in chunks:
        L = r1 - r0; b = np.cumsum(g[r0:r1], axis=0); B = b[-1]
        kk, vv, be, qq = k[r0:r1], v[r0:r1], beta[r0:r1], q[r0:r1]
        G = np.exp(b[:, None, :] - b[None, :, :])  # [t, s, i]
        low = np.tril(np.ones((L, L)), -1); inc = np.tril(np.ones((L, L)))
        Akk = np.einsum('ti,si,tsi->ts', kk, kk, np.where(low[:, :, None] > 0, G, 0))
        M = np.einsum('ti,si,tsi->ts', qq, kk, np.where(inc[:, :, None] > 0, G, 0))
        Tm = np.linalg.inv(np.eye(L) + be[:, None] * Akk)
        W = Tm @ (be[:, None] * kk * np.exp(b)); Ut = Tm @ (be[:, None] * vv)
        kt = kk * np.exp(B - b)
        Sc = S.copy(); U = Ut - W @ S
        Ub, Scb = r(U), r(Sc)
        o[r0:r1] = r(scale * (r(qq * np.exp(b)) @ Scb + r(M) @ Ub))
        S = np.exp(B)[:, None] * S + kt.T @ U
        per.append(dict(r0=r0, r1=r1, b=b, B=B, Akk=Akk, M=M, G=G, Tm=Tm, W=W, kt=kt, U=U, Ub=Ub, Sc=Sc, Scb=Scb))
    dq = np.zeros((T, K)); dk = np.zeros((T, K)); dv = np.zeros((T, V)); dbeta = np.zeros(T); dg = np.zeros((T, K))
    dS = dht.copy()
    for P in reversed(per):
        r0, r1 = P['r0'], P['r1']; L = r1 - r0
        b, B, G, U, Ub, Sc, Scb = P['b'], P['B'], P['G'], P['U'], P['Ub'], P['Sc'], P['Scb']
        kk, vv, be, qq, dOc = k[r0:r1], v[r0:r1], beta[r0:r1], q[r0:r1], dO[r0:r1]
        low = np.tril(np.ones((L, L)), -1)
        dSn = dS.copy()
        du_in = scale * P['M'].T @ dOc  # scores rounded once (c_to_a) in the kernel
        du_in = scale * r(P['M']).T @ dOc
        Y = U @ dSn.T
        dU = du_in + P['kt'] @ dSn
        dS = np.exp(B)[:, None] * dSn + (scale * qq * np.exp(b)).T @ dOc - P['W'].T @ dU
        dR = P['Tm'].T @ dU
        dv[r0:r1] = r(be[:, None] * dR)
        R = vv - (kk * np.exp(b)) @ Scb
        dA = -(r(dR) @ Ub.T) * low
        dbeta[r0:r1] = np.sum(dR * R, axis=1) + np.sum(dA * P['Akk'], axis=1)
        E = be[:, None] * dA
        dMf = scale * dOc @ Ub.T
        dM = dMf * low; dd = np.diag(dMf)
        Gl = np.where(low[:, :, None] > 0, G, 0)
        inter = scale * np.exp(b) * (dOc @ Scb.T)
        intra = np.einsum('ts,si,tsi->ti', dM, kk, Gl)
        db = qq * (inter + intra)
        dqh = inter + intra + dd[:, None] * kk
        col = np.einsum('sr,si,sri->ri', E, kk, Gl) + np.einsum('sr,si,sri->ri', dM, qq, Gl)
        row = np.einsum('rs,si,rsi->ri', E, kk, Gl) - np.exp(b) * (r(be[:, None] * dR) @ Scb.T)
        X = np.exp(B - b) * Y
        db += kk * (row - col)
        dkh = col + row + X + dd[:, None] * qq
        dq[r0:r1] = r(dqh); dk[r0:r1] = r(dkh)
        state = np.exp(B) * np.sum(dSn * Sc, axis=1)
        xs = P['kt'] * Y
        prefix = np.cumsum(xs, axis=0) - xs
        suf = np.cumsum(db[::-1], axis=0)[::-1]
        dg[r0:r1] = suf + prefix + state
    return dict(o=o, dq=dq, dk=dk, dv=dv, dbeta=dbeta, dg=dg, dh0=dS)
ex = run(lambda x: x); ap = run(bf)
print(f'seed {seed} T {T} g_lo {glo}: ' + ' '.join(f'{n} {np.sqrt(np.mean((ap[n]-ex[n])**2)/np.mean(ex[n]**2)):.2e}' for n in ex))
