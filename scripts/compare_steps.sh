# compare(), sourced by scripts/multi_gpu_check.sh and test/test_compare_steps.sh: it reads logs
# $OUT/NAME.log and reports through the caller's pass NAME DETAIL / failc NAME DETAIL.

# compare NAME REF TEST FIRST_TOL LOSS_TOL NORM_TOL [NORM_STEPS [CONTROL]]: the step lines of two logs
# ("step N/M | loss X | lr .. | norm Y | .."). CONTROL: a third log of the reference's run that differs
# from it only in the order of fp32 additions; from step 2 on, a step's tolerance is at least 3 x the
# largest relative difference the control showed up to that step (the run is as close to the
# reference as summation order alone makes it).
compare() {
    local name=$1 ref=$2 test=$3 ctl=${8:-}
    local res
    res=$(awk -v t1="$4" -v tl="$5" -v tn="$6" -v nn="${7:-1000000}" -v hasctl="$([ -n "$ctl" ] && echo 1 || echo 0)" '
        FNR == 1 { f++ }
        /^step +[0-9]+\/[0-9]+ \| loss / {
            split($0, a, / \| /); n = a[1]; sub(/^step +/, "", n); sub(/\/.*/, "", n); n += 0
            l = a[2]; sub(/^loss /, "", l); m = a[4]; sub(/^norm /, "", m)
            if (f == 1) { L1[n] = l + 0; N1[n] = m + 0; c1++; if (first == 0 || n < first) first = n; if (n > last) last = n }
            else if (f == 2) { L2[n] = l + 0; N2[n] = m + 0; c2++ }
            else { L3[n] = l + 0; N3[n] = m + 0 }
        }
        function ad(x) { return x < 0 ? -x : x }
        END {
            if (c1 == 0 || c1 != c2) { printf "BAD %d vs %d step lines", c1, c2; exit }
            ml = 0; mn = 0; bad = ""; same = 1
            for (n = first; n <= last; n++) {   # in step order: the first step out of tolerance is reported
                if (!(n in L1)) continue
                if (!(n in L2)) { printf "BAD step %d missing", n; exit }
                dl = ad(L2[n] - L1[n]); dn = ad(N2[n] - N1[n])
                if (L2[n] != L1[n] || N2[n] != N1[n]) same = 0
                rl = dl / (ad(L1[n]) > 1e-9 ? ad(L1[n]) : 1e-9); rn = dn / (ad(N1[n]) > 1e-9 ? ad(N1[n]) : 1e-9)
                if (rl > ml) ml = rl; if (rn > mn) mn = rn
                tol_l = (n == first ? t1 : tl); tol_n = (n == first ? t1 : tn)
                if (hasctl && (n in L3)) {
                    cl = ad(L3[n] - L1[n]) / (ad(L1[n]) > 1e-9 ? ad(L1[n]) : 1e-9); cn = ad(N3[n] - N1[n]) / (ad(N1[n]) > 1e-9 ? ad(N1[n]) : 1e-9)
                    if (cl > mcl) mcl = cl; if (n <= nn && cn > mcn) mcn = cn
                    if (n > first) { if (3 * mcl > tol_l) tol_l = 3 * mcl; if (3 * mcn > tol_n) tol_n = 3 * mcn }
                }
                if (dl > tol_l * ad(L1[n]) + 1e-4 && bad == "") bad = sprintf("step %d loss %.6f vs %.6f", n, L2[n], L1[n])
                if (n <= nn && dn > tol_n * ad(N1[n]) + 1e-3 && bad == "") bad = sprintf("step %d norm %.4f vs %.4f", n, N2[n], N1[n])
            }
            printf "%s %d steps, max rel diff loss %.2e norm %.2e%s%s, step %d loss %.6f vs %.6f%s%s", (bad == "" ? "OK" : "BAD"), c1, ml, mn,
                   (nn < last ? sprintf(" (norms checked over steps %d-%d)", first, nn) : ""),
                   (hasctl ? sprintf(" [summation-order control: loss %.2e norm %.2e]", mcl, mcn) : ""),
                   first, L2[first], L1[first], (same ? ", bit-identical" : ""), (bad == "" ? "" : "; first out of tolerance: " bad)
        }' "$OUT/$ref.log" "$OUT/$test.log" ${ctl:+"$OUT/$ctl.log"})
    case $res in
        OK*) pass "$name" "${res#OK } ($test vs $ref)";;
        *) failc "$name" "${res#BAD } ($test vs $ref; logs $OUT/$ref.log $OUT/$test.log; its last lines: $(tail -2 "$OUT/$test.log" | tr '\n' ' '))";;
    esac
}
