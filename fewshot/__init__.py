"""fewshot: honest statistics for audio classification with little labelled data.

Two families of protocols share one results format and one report:

- random-weight CNN evaluation (``fewshot randomcnn``): untrained front-ends
  turn clips into feature vectors; SVM / ELM / nearest-neighbour classifiers
  are fitted on them [1]_;
- few-data training (``fewshot run``): CNNs, prototypical networks and
  pretrained models trained on n clips per class without validation data [2]_.

References
----------
.. [1] J. Pons and X. Serra, "Randomly weighted CNNs for (music) audio
   classification", ICASSP 2019.
.. [2] J. Pons, J. Serrà and X. Serra, "Training neural audio classifiers with
   few data", ICASSP 2019.
"""

__version__ = "0.1.0"
