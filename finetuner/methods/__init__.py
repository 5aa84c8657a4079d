"""Training methods: one module per method, each declared by one :func:`register` call.

A method is a :class:`Method`: its name (``TrainConfig.method``, ``--method``), how people see it (a display name
for status lines, a label for the app's radio, a summary for ``--help``), its default epochs and batch size, flags
the rest of the code reads instead of testing names (``has_epochs``, ``sentence_classifier``, ``adapter``), an
optional learning-rate rule, and ``train(job: TrainingJob) -> TrainingResult``. Config validation, ``auto``
(:mod:`finetuner.method_choice`), the CLI's ``--method`` and the app's radio read :mod:`.registry`.

Adding a method: write ``finetuner/methods/mine.py``::

    from .base import Method, TrainingJob, TrainingResult
    from .registry import register

    def train(job: TrainingJob) -> TrainingResult:
        from ..training.finetune import ...  # the heavy lifting: import it here (see below)
        ...
        return TrainingResult(model, trainer, job.config, job.progress.stopped)

    register(Method("mine", "my method", "My method", "what it does", epochs=3.0, batch_size=32, train=train))

and add ``mine`` to the import line below (the order there is the order of ``TrainConfig``'s ``METHODS``, the CLI's
choices and the app's radio). A method module is imported with :mod:`finetuner.config` (which validates names
against the registry), so it imports training code inside ``train``, not at the top.
"""

from . import finetune, head, fewshot, head_finetune, lora  # noqa: F401 - each registers its method; in this order
from .base import Method, TrainingJob, TrainingResult  # noqa: F401
from .registry import METHOD_NAMES, find, get, method_defaults, names, register, ui_choices  # noqa: F401
