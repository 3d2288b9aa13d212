"""What the named judges with a published input format share.

* The format is a protocol fact: its texts are the judge's `template_parts` (hashed, with any
  wording of ours such as a retry request, into `prompt_hash`), and their sha256
  (`template_sha256`) is what the pipeline stores on every verdict the judge gives, unparseable
  ones included, so a stored verdict says which format produced it.
* Typed params: a judge declares its own as `LLMJudge.Params` (a PluginOptions model), beside the
  common ones of `LLMJudge`; the run config is checked against them before anything runs, and the
  judge checks the same model when it is built.
* What the model reads is declared (`channels`, `modalities`, `input_limit`); asking a text-only
  format for images (`multimodal: true`) is a config error, not a silent drop.
"""
from __future__ import annotations

import hashlib
from typing import Any

from ..errors import ConfigError
from ..options import check_options
from ..records import Modality
from .llm import LLMJudge


class PinnedFormatJudge(LLMJudge):
    """Base of judges whose model was trained on one published input format."""

    def __init__(self, **params: Any):
        name = self.registered_name
        # every param at once, in the run config's error format (key path, did-you-mean)
        checked = check_options("judge", name, type(self), params, where=f"judge {name}", key="params")
        own_names = set(self.Params.model_fields) if self.Params is not None else set()  # type: ignore[attr-defined]
        self.own = {k: getattr(checked, k) for k in own_names}  # typed, defaults filled, checked once
        self.setup(**self.own)
        super().__init__(**{k: v for k, v in params.items() if k not in own_names})
        if self.multimodal and Modality.IMAGE not in self.modalities:
            raise ConfigError(f"judge {name}: its model reads text only; param 'multimodal' must be false")

    def setup(self, **own: Any) -> None:
        """Take the judge's own (validated) params, before the backend is made."""

    def identity_extra(self) -> dict[str, Any]:
        return dict(self.own)

    def template_parts(self) -> list[str]:
        """The published format's texts (prompt_parts adds any wording of ours, such as a retry request)."""
        raise NotImplementedError

    def prompt_parts(self) -> list[str]:
        return self.template_parts()

    def template_sha256(self) -> str:
        if "_template_sha256" not in self.__dict__:  # fixed once the judge is built
            text = "\n\n".join(self.template_parts())
            self.__dict__["_template_sha256"] = hashlib.sha256(text.encode("utf-8")).hexdigest()
        return self.__dict__["_template_sha256"]
