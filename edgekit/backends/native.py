"""The native backend: interpreter-free C generated from the model (edgekit.codegen.native) plus its kernels.

Portable C with Arm DSP paths (__ARM_FEATURE_DSP); elsewhere (Xtensa, RISC-V, the host) the same kernels run
their portable C path. Needs no library: only its own sources.
"""

from __future__ import annotations

from pathlib import Path

from edgekit.backends.base import YES, Backend, BackendOutput, BuildNeeds, Target, Verdict, no


class NativeBackend(Backend):
    name = "native"

    def supports(self, graph) -> Verdict:
        from edgekit.codegen.native import unsupported_reasons

        reasons = unsupported_reasons(graph)
        return no(f"the native backend does not support {'; '.join(reasons)}") if reasons else YES

    def write(self, graph, model_dir: Path, target: Target, *, name: str | None = None, **options) -> BackendOutput:
        from edgekit.codegen.native import generate_native_model

        # The input is preserved across inferences (edgekit_backend.h requires it): the protocol's `infer N W`
        # runs one uploaded input N + W times, as MLPerf Tiny's runner expects.
        model = generate_native_model(graph, model_dir, name=name, preserve_input=True)
        files = sorted(Path(f).name for f in model.files)
        needs = BuildNeeds(sources=[f for f in files if f.endswith(".c")],
                           headers=[f for f in files if f.endswith(".h")], defines=["EK_PROFILE_LAYERS"])
        model.context = _context(graph, model)
        # which graph operator each device layer runs (views run none): per-layer tables map ek-layers back;
        # what canonicalization folded away before codegen (edgekit.codegen.canonical), one phrase each
        manifest = {"device_layers": model.layer_operators, "canonicalization": model.canonical}
        return BackendOutput(self.name, files, needs, model.arena_bytes, manifest, model)


def _context(graph, model) -> dict:
    """What a platform's README and scaffold show of the model."""
    from edgekit.codegen.common import c_comment, tensor_context

    ops = [{"op": name} for name in sorted(set(model.layers))]
    return {"model_comment": c_comment(graph.name), "model_sha256": graph.sha256, "ops": ops, "num_ops": len(ops),
            "num_layers": len(model.layers), "input": tensor_context(graph.input_tensors()[0]),
            "output": tensor_context(graph.output_tensors()[0]), "arena": {"bytes": model.arena_bytes},
            "arena_in_psram": False}
