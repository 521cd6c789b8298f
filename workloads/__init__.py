"""Workloads a campaign trains: datasets and the models that learn them."""

# The default app's datasets: the grey digits, Digits-5-lite (workloads/digits5.py),
# multi-domain images from local archives (workloads/domain_files.py), FLAIR's
# multi-label HDF5 file (workloads/flair.py) and generated topic sentences for
# FedSpine (workloads/textcls.py).
DATASETS = ("digits", "digits5", "domain-files", "flair", "text")
# FLAIR's two label sets: 17 coarse labels or 1,628 fine-grained ones.
FLAIR_LABELS = ("coarse", "fine")
# Datasets of token ids, not images (workloads/textcls.py: generated sentences),
# and the strategies whose models read them (their own transformer).
TEXT_DATASETS = ("text",)
TEXT_STRATEGIES = ("fedspine",)

# The networks a strategy's model variant is built on: "squeezenet" (the
# measurement study's SqueezeNet-style CNN, workloads/squeezenet.py) or "cnn"
# (the FedBN/FedWon papers' digit CNN, workloads/digitcnn.py). Here, beside the
# datasets, so that a campaign file is checked without importing torch.
ARCHITECTURES = ("squeezenet", "cnn")
# The digit CNN's widest width: 72M parameters, 290 MB a message; beyond, a typo.
CNN_MAX_WIDTH = 2.0
