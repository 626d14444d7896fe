"""promote: move the ``champion`` alias to the challenger when it beats the champion."""

from typing import List

from kfp import dsl

from .base import COMPONENT


@dsl.component(**COMPONENT)
def promote(params_yaml: str, overrides: List[str], challenger_version: str, stage: str = "parser") -> bool:
    """faceparse.registry.promote(params) → whether the challenger became the champion (the decision and
    its reason are logged and kept as model-version tags). challenger_version (the version register just
    created) ties the task to it; a mismatch (another run registered in between) is reported. One output
    on purpose: kfp.local 2.17 cannot resolve a named output of a multi-output task in a dsl.If."""
    from faceparse.launch.params import component_params
    from faceparse.registry import promote as promote_step

    params = component_params(params_yaml, overrides, stage=stage)
    out = promote_step(params)
    if str(out.get("challenger")) != str(challenger_version):
        print(f"warning: the challenger alias points at v{out.get('challenger')}, not v{challenger_version} "
              "(another run registered in between)")
    print(f"promote: {out['decision']}: {out['reason']}")
    return bool(out["promoted"])
