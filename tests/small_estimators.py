"""Small, fast settings of every estimator, shared by the file-safety and estimator-state tests."""

from npclust.cluster import DEC, IDEC, IMSAT, KMeans, SpectralClustering

SETTINGS = {
    "imsat": (IMSAT, dict(hidden_dims=(16,), epochs=2, batch_size=40, n_neighbors=5)),
    "dec": (DEC, dict(hidden_dims=(16,), latent_dim=2, pretrain_epochs=2, pretrain_batch_size=32,
                      max_iter=20, update_interval=10, batch_size=48, kmeans_n_init=2)),
    "idec": (IDEC, dict(hidden_dims=(16,), latent_dim=2, pretrain_epochs=2,
                        pretrain_batch_size=32, max_iter=20, update_interval=10, batch_size=48,
                        kmeans_n_init=2)),
    "kmeans": (KMeans, dict(n_init=2)),
    "spectral": (SpectralClustering, dict(n_neighbors=5, n_init=2)),
}
